"""Feature store: round trips (images, ragged videos), zero-copy reads, media scanning, spec, quarantine."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pyarrow as pa
import pytest

from .test_store_support import IMAGE_SPEC, VIDEO_SPEC, extract, fake_features, items_of, write_media

from features.media import DuplicateMediaIdError, MediaItem, hash_file, scan_media
from features.store import (
    FeatureStore,
    IncompleteRunError,
    QuarantinedError,
    SnapshotNotFoundError,
    SpecMismatchError,
    StoreError,
    StoreSpec,
)


def _item(name: str, data: bytes, kind: str = "image") -> MediaItem:
    return MediaItem(name, f"{name}.jpg", hashlib.sha256(data).hexdigest(), kind, len(data))


def test_scan_media_hashes_sorted_and_rejects_duplicate_ids(tmp_path):
    write_media(tmp_path / "m", ["b", "a", "sub/c"])
    (tmp_path / "m" / "notes.txt").write_text("not media")
    (tmp_path / "m" / ".hidden.jpg").write_bytes(b"x")
    items = scan_media(tmp_path / "m", ["jpg"])
    assert [i.rel_path for i in items] == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert [i.media_id for i in items] == ["a", "b", "c"]
    a = tmp_path / "m" / "a.jpg"
    assert items[0].sha256 == hashlib.sha256(a.read_bytes()).hexdigest() == hash_file(a, chunk_size=7)
    assert items[0].kind == "image" and items[0].size == a.stat().st_size
    write_media(tmp_path / "m", ["other/a"])
    with pytest.raises(DuplicateMediaIdError) as e:
        scan_media(tmp_path / "m", ["jpg"])
    assert "a.jpg" in str(e.value) and "other/a.jpg" in str(e.value)
    vids = write_media(tmp_path / "v", ["clip"], ext=".MP4")
    assert scan_media(tmp_path / "v")[0].kind == "video" and vids[0].exists()


def test_image_round_trip_bit_exact_zero_copy(tmp_path):
    media = tmp_path / "media"
    write_media(media, [f"img{i:02d}" for i in range(11)] + ["bad01"])
    snap = extract(tmp_path / "store", media, flush_rows=4)
    assert snap.counts["ok"] == 11 and snap.counts["error"] == 1 and snap.counts["media"] == 12
    assert len(snap.content_digest()) == 64
    reader = FeatureStore.open_reader(tmp_path / "store")
    assert reader.snapshot_id == snap.id and len(reader) == 11 and "bad01" not in reader
    assert reader.media_ids == [f"img{i:02d}" for i in range(11)]
    before = pa.total_allocated_bytes()
    for it in items_of(media):
        if it.media_id == "bad01":
            continue
        want = fake_features((media / it.rel_path).read_bytes(), IMAGE_SPEC)
        got = reader.get(it.media_id)
        assert got.dtype == np.float16 and got.shape == (49, 64)
        assert got.tobytes() == want.tobytes()  # bit-exact
        assert not got.flags.writeable and not got.flags.owndata  # read-only view, not a copy
        assert np.shares_memory(got, reader.get(it.media_id))  # the same mapped bytes every time
        assert reader.get_by_hash(it.sha256).tobytes() == want.tobytes()
        with pytest.raises(ValueError):
            got[0, 0] = 1
    assert pa.total_allocated_bytes() == before  # nothing allocated by Arrow: memory-mapped
    ids = ["img03", "img00", "img10", "img03"]
    batch = reader.get_many(ids)
    assert batch.shape == (4, 49, 64) and batch.dtype == np.float16
    for row, m in zip(batch, ids):
        assert row.tobytes() == reader.get(m).tobytes()
    out = np.empty((2, 49, 64), np.float16)
    assert reader.get_many(["img01", "img02"], out=out) is out
    with pytest.raises(KeyError, match="nope"):
        reader.get("nope")
    with pytest.raises(QuarantinedError, match="cannot decode"):
        reader.get("bad01")
    with pytest.raises(QuarantinedError):
        reader.get_many(["img00", "bad01"])
    # the reader pickles as (path, snapshot) and reopens lazily
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.get("img05").tobytes() == reader.get("img05").tobytes()


def test_video_round_trip_ragged_zero_copy(tmp_path):
    media = tmp_path / "media"
    write_media(media, [f"vid{i}" for i in range(9)], ext=".mp4")
    snap = extract(tmp_path / "store", media, VIDEO_SPEC, flush_rows=3)
    reader = FeatureStore.open_reader(tmp_path / "store", snapshot=snap.id)
    items = items_of(media, "video")
    frames = set()
    for it in items:
        want = fake_features((media / it.rel_path).read_bytes(), VIDEO_SPEC)
        got = reader.get(it.media_id)
        assert got.shape == want.shape and got.shape[1] == 512
        assert got.tobytes() == want.tobytes()
        assert not got.flags.writeable and not got.flags.owndata
        assert reader.status(it.media_id).frames == want.shape[0]
        frames.add(want.shape[0])
    assert len(frames) > 1  # really ragged
    many = reader.get_many([it.media_id for it in items])
    assert isinstance(many, list) and [m.shape for m in many] == [reader.get(it.media_id).shape for it in items]


def test_quarantine_records_list_path_hash_reason(tmp_path):
    media = tmp_path / "media"
    write_media(media, ["good1", "bad_x", "sub/bad_y"])
    extract(tmp_path / "store", media)
    reader = FeatureStore.open_reader(tmp_path / "store")
    errs = reader.errors()
    assert [(e.media_id, e.rel_path) for e in errs] == [("bad_x", "bad_x.jpg"), ("bad_y", "sub/bad_y.jpg")]
    for e in errs:
        assert e.sha256 == hash_file(media / e.rel_path) and "cannot decode" in e.reason
    st = reader.status("bad_y")
    assert not st.ok and st.status == "error" and st.rel_path == "sub/bad_y.jpg"
    assert reader.status("good1").ok
    assert reader.all_media_ids == ["bad_x", "bad_y", "good1"] and reader.media_ids == ["good1"]


def test_spec_mismatch_names_fields(tmp_path):
    FeatureStore.open_or_create(tmp_path / "s", IMAGE_SPEC)
    FeatureStore.open_or_create(tmp_path / "s", StoreSpec("fake-grid", (49, 64), "float16",
                                                          params={"size": 224, "seed": 0}))  # same spec: fine
    other = StoreSpec("fake-grid", (49, 2048), "float16", params={"seed": 0, "size": 336})
    with pytest.raises(SpecMismatchError) as e:
        FeatureStore.open_or_create(tmp_path / "s", other)
    msg = str(e.value).split("differing fields")[1]
    assert "shape" in msg and "params.size" in msg and "extractor" not in msg and "dtype" not in msg
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("x")
    with pytest.raises(StoreError, match="not empty and not a feature store"):
        FeatureStore.open_or_create(tmp_path / "other", IMAGE_SPEC)
    with pytest.raises(SpecMismatchError, match="ragged"):
        FeatureStore.open_or_create(tmp_path / "s", StoreSpec("fake-grid", (None, 64), ragged=True,
                                                              params={"seed": 0, "size": 224}))


def test_writer_validates_and_commit_refuses_incomplete_runs(tmp_path):
    store = FeatureStore.open_or_create(tmp_path / "s", IMAGE_SPEC)
    items = [_item(f"x{i}", bytes([i]) * 10) for i in range(3)]
    plan = store.plan(items)
    assert [i.media_id for i in plan.to_extract] == ["x0", "x1", "x2"]
    run = store.begin_run()
    w = run.shard_writer("a")
    with pytest.raises(ValueError, match="shape"):
        w.add(items[0], np.zeros((49, 63), np.float16))
    with pytest.raises(TypeError):
        w.add(items[0], np.zeros((49, 64), np.complex64))
    assert w.add(items[0], np.zeros((49, 64), np.float32))  # float32 -> float16 is fine
    assert not w.add(items[0], np.ones((49, 64), np.float16))  # same hash: skipped
    w.close()
    with pytest.raises(IncompleteRunError) as e:
        store.commit(run, items)
    assert {m.media_id for m in e.value.missing} == {"x1", "x2"}
    with pytest.raises(SnapshotNotFoundError):
        FeatureStore.open_reader(tmp_path / "s")
    w2 = run.shard_writer("b")
    w2.add(items[1], np.ones((49, 64)))
    w2.add(items[2], np.full((49, 64), 2.0))
    w2.close()
    assert run.done_hashes() == {i.sha256 for i in items}
    snap = store.commit(run, items)
    assert snap.counts["new"] == 3
    assert not run.path.exists()  # staging removed after commit


def test_duplicate_content_is_extracted_once(tmp_path):
    store = FeatureStore.open_or_create(tmp_path / "s", IMAGE_SPEC)
    items = [_item("a", b"same"), _item("b", b"same"), _item("c", b"other")]
    plan = store.plan(items)
    assert [i.media_id for i in plan.to_extract] == ["a", "c"] and [i.media_id for i in plan.duplicates] == ["b"]
    run = store.begin_run()
    with run.shard_writer() as w:
        for it in plan.to_extract:
            w.add(it, fake_features(it.sha256.encode(), IMAGE_SPEC))
    store.commit(run, items)
    r = store.reader()
    assert np.shares_memory(r.get("a"), r.get("b")) and r.status("b").rel_path == "b.jpg"
