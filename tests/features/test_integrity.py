"""Integrity under awkward input (issue 16): one folder of awkward and broken images and videos, mixed;
media indexes that lie; paths that leave the media root; corrupt segments; location-free digests."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from features.engine import MediaIndexError, extract
from features.extractors import get_extractor
from features.media import hash_bytes, hash_file
from features.store import CorruptionError, FeatureStore
from pipelines.synth.video import random_clip, write_mp4

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# file name -> the quarantine category it must get (None: a good file, extracted)
IMAGES = {"rgb.jpg": None, "cmyk.jpg": None, "sixteen.png": None, "palette.png": None, "rotated.jpg": None,
          "tiny.png": None, "clip.jpg": None,
          "truncated.jpg": "truncated", "empty.jpg": "empty", "notmedia.jpg": "not-image", "bomb.png": "too-large"}
VIDEOS = {"clip.mp4": None, "oneframe.mp4": None, "odd.mp4": None,
          "cut.mp4": "corrupt", "empty.mp4": "empty", "notmedia.mp4": "not-video", "picture.mp4": "not-video"}


def _jpeg_bytes(seed: int, size=(80, 60), mode="RGB", **save) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.convert(mode).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _odd_mp4(path: Path) -> None:
    """65x49 frames: odd sizes need a 4:4:4 stream (the synthetic writer's yuv420p needs even ones)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 65, 49, "yuv444p"
        for k in range(12):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((49, 65, 3), k * 20, np.uint8), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def awkward_media(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "rgb.jpg").write_bytes(_jpeg_bytes(0))
    (d / "cmyk.jpg").write_bytes(_jpeg_bytes(1, mode="CMYK"))
    Image.fromarray(np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21).save(d / "sixteen.png")
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 50, 3), np.uint8)).quantize(16).save(
        d / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (d / "rotated.jpg").write_bytes(_jpeg_bytes(3, size=(90, 50), exif=exif.tobytes()))
    Image.new("RGB", (1, 1), (9, 200, 30)).save(d / "tiny.png")
    (d / "clip.jpg").write_bytes(_jpeg_bytes(4))  # same media id as clip.mp4: another kind, no clash
    good = _jpeg_bytes(5, size=(120, 90))
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "notmedia.jpg").write_text("a shopping list, not a picture\n")
    Image.new("1", (10_000, 9_000)).save(d / "bomb.png")  # 90 M pixels > PIL's 89.5 M limit; ~11 KiB on disk
    write_mp4(d / "clip.mp4", random_clip(random.Random(0), 64, 48, 10, 16))
    write_mp4(d / "oneframe.mp4", random_clip(random.Random(1), 64, 48, 10, 1))
    _odd_mp4(d / "odd.mp4")
    whole = (d / "clip.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # cut before the moov atom
    (d / "empty.mp4").write_bytes(b"")
    (d / "notmedia.mp4").write_text("not a video either\n")
    (d / "picture.mp4").write_bytes(_jpeg_bytes(6))
    return d


@pytest.fixture(scope="module")
def extractors():
    return {"image": get_extractor("clip-vit-b32-grid", device="cpu", weights="random"),
            "video": get_extractor("clip-vit-b32-video", device="cpu", weights="random")}


@pytest.fixture(scope="module")
def awkward(tmp_path_factory, extractors):
    """The awkward folder extracted once per kind (in-process decoding, so fd 2 is this process's)."""
    base = tmp_path_factory.mktemp("awkward")
    media = awkward_media(base / "media")
    reports = {kind: extract(media, base / f"store-{kind}", extractor=ex, batch_size=4, workers=0, progress=False)
               for kind, ex in extractors.items()}
    return base, media, reports


@pytest.mark.parametrize("kind, expected", [("image", IMAGES), ("video", VIDEOS)])
def test_awkward_folder_extracts_every_good_file_and_quarantines_every_bad_one(awkward, kind, expected):
    base, _, reports = awkward
    report = reports[kind]
    good = {Path(n).stem for n, why in expected.items() if why is None}
    bad = {Path(n).stem: why for n, why in expected.items() if why is not None}
    assert report.items == len(expected) and report.extracted == len(good)
    got = {q["media_id"]: q["reason"] for q in report.quarantined}
    assert set(got) == set(bad)
    for media_id, reason in got.items():
        assert reason.split(":")[0] == bad[media_id], (media_id, reason)  # category first, then a detail
        assert str(base) not in reason and not re.search(r"0x[0-9a-f]{6,}", reason), reason  # location-free
    reader = FeatureStore.open_reader(base / f"store-{kind}")
    assert set(reader.media_ids) == good
    for m in good:
        assert np.isfinite(reader.get(m).astype(np.float32)).all()


def test_awkward_images_decode_to_the_expected_pixels(awkward, extractors):
    _, media, _ = awkward
    ex = extractors["image"]
    assert ex.decode(media / "rotated.jpg").size == (50, 90)  # EXIF orientation 6 applied: 90x50 turned
    px = np.asarray(ex.decode(media / "sixteen.png"))
    v = int(np.asarray(Image.open(media / "sixteen.png"))[0, 1])  # 21: scaled to 8 bits as round(v*255/65535)
    assert px[0, 1, 0] == round(v * 255 / 65535) and px.shape == (48, 64, 3)
    assert np.asarray(ex.decode(media / "tiny.png")).tolist() == [[[9, 200, 30]]]


@pytest.mark.parametrize("kind", ["image", "video"])
def test_a_rerun_of_the_awkward_folder_extracts_nothing(awkward, extractors, kind):
    base, media, reports = awkward
    again = extract(media, base / f"store-{kind}", extractor=extractors[kind], workers=0, progress=False)
    assert again.extracted == 0 and again.snapshot == reports[kind].snapshot
    assert len(again.quarantined) == len(reports[kind].quarantined)


def test_quarantine_is_reported_once_and_native_decoder_output_is_captured(tmp_path, extractors, capfd, caplog):
    media = tmp_path / "m"
    media.mkdir()
    write_mp4(media / "ok.mp4", random_clip(random.Random(3), 64, 48, 10, 8))
    whole = (media / "ok.mp4").read_bytes()
    (media / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    capfd.readouterr()
    with caplog.at_level("INFO"):
        report = extract(media, tmp_path / "s", extractor=extractors["video"], workers=0, progress=False)
    out, err = capfd.readouterr()
    assert [q["media_id"] for q in report.quarantined] == ["cut"]
    assert "moov atom not found" in report.quarantined[0]["reason"]  # the decoder's own words, in the reason
    assert "moov" not in err and "moov" not in out  # ... and not on the terminal
    assert not [r for r in caplog.records if "cut" in r.getMessage()]  # the CLI reports it; nothing logs it again


def test_store_errors_lists_the_quarantined_files(awkward):
    from flows.cli import app

    base, _, _ = awkward
    res = CliRunner().invoke(app, ["store", "errors", str(base / "store-image"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {r["rel_path"]: r["reason"].split(":")[0] for r in rows} == {
        n: why for n, why in IMAGES.items() if why is not None}
    text = CliRunner().invoke(app, ["store", "errors", str(base / "store-video")])
    assert text.exit_code == 0 and "cut.mp4" in text.stdout and "picture.mp4" in text.stdout


def test_same_media_in_two_folders_give_identical_store_digests(tmp_path, extractors):
    digests = []
    for where in ("a/deep/folder", "b"):
        media = tmp_path / where / "media"
        media.mkdir(parents=True)
        (media / "rgb.jpg").write_bytes(_jpeg_bytes(0))
        good = _jpeg_bytes(5, size=(120, 90))
        (media / "truncated.jpg").write_bytes(good[: len(good) // 2])
        (media / "notmedia.jpg").write_text("not a picture\n")
        (media / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, broken body
        rep = extract(media, tmp_path / where / "store", extractor=extractors["image"], workers=0, progress=False)
        assert rep.extracted == 1 and len(rep.quarantined) == 3
        digests.append(rep.content_digest)
    assert digests[0] == digests[1]


# --- media indexes and paths ---------------------------------------------------------------------------------

def _index(path: Path, rows: list[dict]) -> Path:
    cols = {k: [r[k] for r in rows] for k in ("media_id", "rel_path", "sha256", "kind", "size")}
    table = pa.table(cols)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return path


def _row(root: Path, rel: str, **over) -> dict:
    p = root / rel
    return {"media_id": Path(rel).stem, "rel_path": rel, "sha256": hash_file(p), "kind": "image",
            "size": p.stat().st_size, **over}


@pytest.mark.parametrize("listed_as", ["new-hash", "stored-hash"])
def test_an_index_row_whose_bytes_do_not_match_its_hash_is_refused(tmp_path, extractors, listed_as):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.jpg").write_bytes(_jpeg_bytes(10))
    (media / "b.jpg").write_bytes(_jpeg_bytes(11))
    first = extract(media, tmp_path / "store", extractor=extractors["image"], workers=0, progress=False)
    (media / "c.jpg").write_bytes(_jpeg_bytes(12, size=(100, 70)))
    # A stale index lists c.jpg (its own size) under another file's hash: one the store lacks (x.jpg, which a
    # later run would then have "reused" c's features for), or one it holds (b.jpg's).
    other = hash_file(media / "b.jpg") if listed_as == "stored-hash" else hash_bytes(_jpeg_bytes(13))
    stale = _row(media, "c.jpg", sha256=other)
    index = _index(tmp_path / "index.arrow", [_row(media, "a.jpg"), _row(media, "b.jpg"), stale])
    with pytest.raises(MediaIndexError, match=rf"c\.jpg \(media_id 'c'\): expected sha256 {other}"):
        extract(index, tmp_path / "store", extractor=extractors["image"], media_root=str(media), workers=0,
                progress=False)
    store = FeatureStore.open(tmp_path / "store")
    assert [s.id for s in store.snapshots()] == [first.snapshot]  # nothing committed under the wrong hash
    if listed_as == "new-hash":
        with pytest.raises(KeyError):
            store.reader().get_by_hash(other)
        # Run again on the fixed index: c is extracted under its real hash; what the refused run staged for a
        # and b is reused, nothing was staged under the wrong hash.
        index = _index(tmp_path / "index.arrow", [_row(media, n) for n in ("a.jpg", "b.jpg", "c.jpg")])
        fixed = extract(index, tmp_path / "store", extractor=extractors["image"], media_root=str(media),
                        workers=0, progress=False)
        assert fixed.extracted == 1 and other not in FeatureStore.open_reader(tmp_path / "store").hashes().values()


UP = os.pardir  # spelt out, so no tracked file holds a literal path into a parent folder


@pytest.mark.parametrize("rel", [f"{UP}/outside.jpg", "/etc/hostname", f"sub/{UP}/{UP}/outside.jpg"])
def test_index_paths_that_leave_the_media_root_are_refused(tmp_path, extractors, rel):
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(_jpeg_bytes(13))
    (media / "in.jpg").write_bytes(_jpeg_bytes(14))
    row = {"media_id": "x", "rel_path": rel, "sha256": "0" * 64, "kind": "image", "size": 1}
    index = _index(tmp_path / "index.arrow", [_row(media, "in.jpg"), row])
    with pytest.raises(MediaIndexError, match=re.escape(repr(rel))):
        extract(index, tmp_path / "store", extractor=extractors["image"], media_root=str(media), workers=0,
                progress=False)
    assert not (tmp_path / "store").exists()  # refused before anything was written


def test_symlinks_inside_the_media_root_are_followed_outside_refused(tmp_path, extractors):
    media = tmp_path / "media"
    (media / "real").mkdir(parents=True)
    (media / "real" / "a.jpg").write_bytes(_jpeg_bytes(15))
    (media / "alias.jpg").symlink_to(media / "real" / "a.jpg")
    (tmp_path / "secret.jpg").write_bytes(_jpeg_bytes(16))
    (media / "leak.jpg").symlink_to(tmp_path / "secret.jpg")
    report = extract(media, tmp_path / "store", extractor=extractors["image"], workers=0, progress=False)
    assert report.items == 2 and report.extracted == 1  # alias and a: the same bytes, one forward
    assert [r["rel_path"] for r in report.refused] == ["leak.jpg"]
    assert report.refused[0]["reason"].startswith("outside-media-root")
    assert "leak" not in FeatureStore.open_reader(tmp_path / "store").all_media_ids


# --- corrupt segments --------------------------------------------------------------------------------------------

def _damaged_copy(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    seg = sorted((dst / "segments").glob("*.arrow"))[0]
    data = bytearray(seg.read_bytes())
    seg.chmod(0o644)
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) - 100]
    seg.write_bytes(bytes(data))
    return seg


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_reader_refuses_a_corrupt_segment_naming_it(awkward, tmp_path, how):
    base, _, _ = awkward
    seg = _damaged_copy(base / "store-image", tmp_path / "s", how)
    reader = FeatureStore.open_reader(tmp_path / "s")
    with pytest.raises(CorruptionError) as e:
        reader.get("rgb")
    assert seg.name in str(e.value) and "vlpet store verify" in str(e.value)
    with pytest.raises(CorruptionError):
        FeatureStore.open_reader(tmp_path / "s").check_segments()
    assert FeatureStore.open_reader(tmp_path / "s", verify=False).snapshot_id  # opt-out exists (benchmarks)
