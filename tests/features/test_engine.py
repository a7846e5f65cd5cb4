"""The extraction engine with real (random-init) CLIP models of tiny depth (conftest's ``tiny_clip``, also
registered in the subprocesses): quarantine, incremental work, videos, and crash-restart bit identity with a
killed extraction subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from features.engine import extract
from features.extractors import get_extractor
from features.store import FeatureStore, StoreBusyError

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("tiny_clip")]


def _jpeg(path: Path, seed: int, size=(96, 72)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def _mp4(path: Path, frames: int, fps: int = 10) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(frames):
            img = np.full((48, 64, 3), (k * 9) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def rn101(tiny_clip):
    return get_extractor("clip-rn101-grid", device="cpu", weights="random")


def test_bad_media_are_quarantined_and_good_ones_extracted(tmp_path, rn101):
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    for k in range(3):
        _jpeg(media / "sub" / f"good{k}.jpg", k, size=(96 + 8 * k, 72))
    (media / "empty.jpg").write_bytes(b"")
    (media / "notes.jpg").write_text("this is not an image")
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 10, 10)).save(buf, "JPEG")
    (media / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    report = extract(media, tmp_path / "store", extractor=rn101, batch_size=2, workers=1, progress=False)
    assert report.items == 6 and report.extracted == 3
    assert {q["media_id"] for q in report.quarantined} == {"empty", "notes", "truncated"}
    assert all(q["reason"] and q["sha256"] and q["rel_path"] for q in report.quarantined)
    reader = FeatureStore.open_reader(tmp_path / "store")
    feats = reader.get("good1")
    assert feats.shape == (49, 2048) and feats.dtype == np.float16
    # The stored grid is what the extractor computes for that image (batch composition aside: fp16 tolerance).
    x = rn101.preprocess(rn101.decode(media / "sub" / "good1.jpg"), as_uint8=True)
    direct = rn101.to_storage(rn101.forward(x))[0]
    np.testing.assert_allclose(feats.astype(np.float32), direct.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert report.random_init is True


def test_incremental_add_change_delete_counts_work(tmp_path, rn101):
    media = tmp_path / "media"
    media.mkdir()
    for k in range(4):
        _jpeg(media / f"img{k}.jpg", k)
    first = extract(media, tmp_path / "store", extractor=rn101, batch_size=4, workers=0, progress=False)
    assert (first.extracted, first.reused) == (4, 0)
    again = extract(media, tmp_path / "store", extractor=rn101, batch_size=4, workers=0, progress=False)
    assert (again.extracted, again.reused, again.snapshot) == (0, 4, first.snapshot)  # nothing to do
    old = FeatureStore.open_reader(tmp_path / "store").get("img1").copy()
    _jpeg(media / "img1.jpg", 101)  # same name, new bytes
    _jpeg(media / "img9.jpg", 9)  # new
    (media / "img3.jpg").unlink()  # deleted
    third = extract(media, tmp_path / "store", extractor=rn101, batch_size=4, workers=0, progress=False)
    assert (third.extracted, third.reused, third.deleted) == (2, 2, 1)
    reader = FeatureStore.open_reader(tmp_path / "store")
    assert sorted(reader.media_ids) == ["img0", "img1", "img2", "img9"]
    assert not np.array_equal(reader.get("img1"), old)
    previous = FeatureStore.open_reader(tmp_path / "store", snapshot=first.snapshot)
    assert np.array_equal(previous.get("img1"), old) and "img3" in previous.media_ids


def test_video_features_are_ragged_hero_sampled(tmp_path):
    media = tmp_path / "videos"
    media.mkdir()
    _mp4(media / "long.mp4", frames=60, fps=10)  # 6 s -> one frame every 1.5 s -> 4 frames
    _mp4(media / "one.mp4", frames=1, fps=10)
    (media / "broken.mp4").write_bytes(b"\x00" * 100)
    report = extract(media, tmp_path / "store", extractor="clip-vit-b32-video", device="cpu", workers=0,
                     progress=False, weights="random")
    assert report.extracted == 2 and [q["media_id"] for q in report.quarantined] == ["broken"]
    reader = FeatureStore.open_reader(tmp_path / "store")
    assert reader.get("long").shape == (4, 512) and reader.get("one").shape == (1, 512)


WORKER = textwrap.dedent("""
    import sys, warnings
    import open_clip
    warnings.simplefilter("ignore")
    open_clip.add_model_config(sys.argv[3])
    from features.engine import extract
    extract(sys.argv[1], sys.argv[2], extractor="clip-rn101-grid", device="cpu", batch_size=2, workers=0,
            progress=False, flush_rows=2, weights="random")
""")


def test_killed_extraction_resumes_to_a_bit_identical_snapshot(tmp_path, tiny_clip):
    media = tmp_path / "media"
    media.mkdir()
    n = 24  # enough batches of 2 that the kill lands mid-run even with the tiny model
    for k in range(n):
        _jpeg(media / f"img{k:02d}.jpg", k)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(media), str(crashed), str(tiny_clip)], env=env)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list(crashed.glob("runs/*/shards/*/seg-*.arrow"))) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "extraction finished before it could be killed; make the test media larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    staged = len(list(crashed.glob("runs/*/shards/*/seg-*.arrow")))
    assert staged >= 2 and not list(crashed.glob("snapshots/*"))  # nothing committed, nothing visible
    resumed = extract(media, crashed, extractor="clip-rn101-grid", device="cpu", batch_size=2, workers=0,
                      progress=False, flush_rows=2, weights="random")
    assert resumed.extracted <= n - 2 * staged  # the flushed batches were not recomputed
    full = extract(media, clean, extractor="clip-rn101-grid", device="cpu", batch_size=2, workers=0,
                   progress=False, flush_rows=2, weights="random")
    assert resumed.content_digest == full.content_digest
    a, b = FeatureStore.open_reader(crashed), FeatureStore.open_reader(clean)
    for media_id in b.media_ids:
        assert np.array_equal(a.get(media_id), b.get(media_id))


SHARD = textwrap.dedent("""
    import pickle, sys, warnings
    import open_clip
    warnings.simplefilter("ignore")
    open_clip.add_model_config(sys.argv[3])
    from features.engine import run_extraction_shard
    job = pickle.loads(open(sys.argv[1], "rb").read())
    run_extraction_shard(job, int(sys.argv[2]), 2, device="cpu", workers=0)
""")


def test_two_shard_processes_then_one_commit_equal_a_single_run(tmp_path, tiny_clip):
    import pickle

    from features.engine import commit_extraction, plan_extraction

    media = tmp_path / "media"
    media.mkdir()
    for k in range(7):
        _jpeg(media / f"img{k}.jpg", 50 + k)
    with plan_extraction(media, tmp_path / "sharded", batch_size=2, device="cpu", weights="random") as job:
        (tmp_path / "job.pkl").write_bytes(pickle.dumps(job))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        procs = [subprocess.Popen([sys.executable, "-c", SHARD, str(tmp_path / "job.pkl"), str(k), str(tiny_clip)],
                                  env=env) for k in range(2)]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
        # The planner holds the writer lock until its block ends: a second writer is refused, not doubled.
        with pytest.raises(StoreBusyError):
            extract(media, tmp_path / "sharded", extractor="clip-rn101-grid", device="cpu", batch_size=2,
                    workers=0, progress=False, weights="random", wait=False)
        snapshot = commit_extraction(job)
    assert not list((tmp_path / "sharded").glob("runs/*"))  # the committed run is gone, no orphan left
    single = extract(media, tmp_path / "single", extractor="clip-rn101-grid", device="cpu", batch_size=2,
                     workers=0, progress=False, weights="random")
    sharded = FeatureStore.open_reader(tmp_path / "sharded", snapshot=snapshot)
    reference = FeatureStore.open_reader(tmp_path / "single")
    assert sorted(sharded.media_ids) == sorted(reference.media_ids) == [f"img{k}" for k in range(7)]
    for media_id in reference.media_ids:
        assert np.array_equal(sharded.get(media_id), reference.get(media_id))
    assert FeatureStore.open(tmp_path / "sharded").latest().content_digest() == single.content_digest


def test_device_decode_path_matches_pil_closely_and_keeps_quarantine(tmp_path, rn101):
    """The batched decode_jpeg path (nvJPEG on a GPU; exercised here on the CPU with the same code)."""
    from features.engine import _decode_on_device, jpeg_for_device
    from features.store import SpecMismatchError

    media = tmp_path / "media"
    media.mkdir()
    for k in range(3):
        _jpeg(media / f"photo{k}.jpg", 200 + k, size=(320, 240))
    Image.new("RGB", (50, 40), (10, 200, 30)).save(media / "plain.png")  # not a JPEG: PIL path
    Image.new("CMYK", (50, 40), (10, 20, 30, 40)).save(media / "cmyk.jpg", quality=90)  # PIL path
    (media / "notes.jpg").write_text("not an image")
    whole = (media / "photo0.jpg").read_bytes()
    (media / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    assert jpeg_for_device(whole, None) and not jpeg_for_device(whole[: len(whole) // 2], None)
    assert not jpeg_for_device((media / "cmyk.jpg").read_bytes(), None)
    assert not jpeg_for_device(whole, max_pixels=100)  # the bomb guard holds on this path too

    # Pixels: the device resize is bicubic with antialias like PIL's, within a couple of grey levels.
    raw = torch.frombuffer(bytearray(whole), dtype=torch.uint8)
    on_device = _decode_on_device(rn101, [raw])[0].to(torch.int16)
    pil = rn101.preprocess(rn101.decode(media / "photo0.jpg"), as_uint8=True).to(torch.int16)
    assert on_device.shape == pil.shape == (1, 3, 224, 224)
    assert (on_device - pil).abs().float().mean() < 2.0

    report = extract(media, tmp_path / "store", extractor=rn101, batch_size=4, workers=1, progress=False,
                     device_decode=True)
    assert report.extracted == 5  # 3 photos on the device path + png + cmyk on the PIL path
    assert {q["media_id"] for q in report.quarantined} == {"notes", "cut"}
    spec = json.loads((tmp_path / "store" / "STORE.json").read_text())
    assert "decode_jpeg" in json.dumps(spec)
    with pytest.raises(SpecMismatchError):  # never mixed with PIL-decoded features
        extract(media, tmp_path / "store", extractor=rn101, workers=0, progress=False)
