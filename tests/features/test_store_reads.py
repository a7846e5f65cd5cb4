"""Feature store reads: cold rows are prefetched (only those not in memory), batch gathers keep request order."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

from .test_store_support import IMAGE_SPEC, VIDEO_SPEC, extract, fake_features, write_media

from features.store import FeatureStore, QuarantinedError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-cache residency is Linux's")


def _evict(root):
    for p in (root / "segments").glob("*.arrow"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped: write them out first
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.mark.parametrize("spec", [IMAGE_SPEC, VIDEO_SPEC], ids=["fixed", "ragged"])
def test_prefetch_asks_only_for_rows_not_in_memory(tmp_path, spec):
    ext = ".mp4" if spec.ragged else ".jpg"
    write_media(tmp_path / "m", [f"s{i:02d}" for i in range(12)], ext=ext)
    extract(tmp_path / "s", tmp_path / "m", spec, flush_rows=5)
    reader = FeatureStore.open_reader(tmp_path / "s")
    ids = reader.media_ids[::2]
    for m in reader.media_ids:  # map (and verify: a whole-file read, once per process) every segment first
        reader.get(m)
    reader.close()
    gc.collect()
    _evict(tmp_path / "s")  # nothing of ours is mapped any more, so the pages really leave the cache
    assert reader.prefetch(ids) == len(ids)
    got = [reader.get(m) for m in ids]  # waits for those reads
    for m, arr in zip(ids, got, strict=True):
        assert np.array_equal(arr, fake_features((tmp_path / "m" / f"{m}{ext}").read_bytes(), spec))
    assert reader.prefetch(ids) == 0  # now resident: no new reads, only a residency check
    assert reader.prefetch(["no-such-id"]) == 0


def test_get_many_gathers_across_segments_in_request_order(tmp_path):
    names = [f"img{i:02d}" for i in range(13)] + ["bad01"]
    write_media(tmp_path / "m", names)
    extract(tmp_path / "s", tmp_path / "m", flush_rows=4)  # 4 segments
    reader = FeatureStore.open_reader(tmp_path / "s")
    order = ["img12", "img00", "img07", "img12", "img03", "img09"]  # across segments, out of order, a repeat
    out = np.full((len(order), *IMAGE_SPEC.shape), 7, dtype=np.float16)
    assert reader.get_many(order, out=out) is out
    for m, row in zip(order, out, strict=True):
        assert np.array_equal(row, fake_features((tmp_path / "m" / f"{m}.jpg").read_bytes(), IMAGE_SPEC))
    with pytest.raises(QuarantinedError, match="bad01"):
        reader.get_many(["img01", "bad01"])
    with pytest.raises(KeyError, match="nope"):
        reader.get_many(["img01", "nope"])


def test_cold_rows_are_read_with_preads_and_equal_the_mapped_rows(tmp_path, monkeypatch):
    from features.store import segment as segment_mod

    names = [f"img{i:02d}" for i in range(13)]
    write_media(tmp_path / "m", names)
    extract(tmp_path / "s", tmp_path / "m", flush_rows=4)
    reader = FeatureStore.open_reader(tmp_path / "s")
    order = ["img12", "img00", "img07", "img12", "img03", "img09", "img01"]
    warm = reader.get_many(order)  # the mapped path (and every segment mapped, so verified, first)
    reader.close()
    gc.collect()
    _evict(tmp_path / "s")
    calls = []
    real = segment_mod.Segment.read_run
    monkeypatch.setattr(segment_mod.Segment, "read_run",
                        lambda self, first, bufs: (calls.append(len(bufs)), real(self, first, bufs)))
    cold = reader.get_many(order)
    # the rows not in memory were read by pread (rows sharing a page with the segment's Arrow header, which
    # opening the segment read back in, may be resident again)
    assert 0 < sum(calls) <= len(set(order))  # a repeated row is read once (and copied)
    assert cold.tobytes() == warm.tobytes()
    for m, row in zip(order, cold, strict=True):
        assert np.array_equal(row, fake_features((tmp_path / "m" / f"{m}.jpg").read_bytes(), IMAGE_SPEC))
    calls.clear()
    assert reader.get_many(order).tobytes() == warm.tobytes() and not calls  # now resident: the maps serve it


def test_pread_rows_equal_mapped_rows_for_every_row(tmp_path):
    names = [f"img{i:02d}" for i in range(9)]
    write_media(tmp_path / "m", names)
    extract(tmp_path / "s", tmp_path / "m", flush_rows=4)
    reader = FeatureStore.open_reader(tmp_path / "s")
    reader.get_many(reader.media_ids)
    for k in range(len(reader._seg_names)):
        seg = reader._segment(k)
        rows = np.arange(seg.num_rows)[::-1].copy()
        mapped = np.zeros((len(rows), *IMAGE_SPEC.shape), dtype=np.float16)
        seg.copy_rows(rows, mapped, np.arange(len(rows)))
        read = np.zeros_like(mapped)
        read_bytes = read.reshape(len(rows), -1).view(np.uint8)
        for j, r in enumerate(rows.tolist()):  # one pread per row, in reverse file order
            seg.read_run(r, [read_bytes[j]])
        assert read.tobytes() == mapped.tobytes()


def test_threaded_gather_fills_every_row_in_request_order(tmp_path, monkeypatch):
    """Warm gathers split over threads (each taking rows as it goes) equal the rows read one by one; a failing
    part stops the gather with its error, and nothing is left running that could still write into ``out``."""
    import threading

    import features.store.reader as reader_mod

    write_media(tmp_path / "m", [f"img{i:02d}" for i in range(13)])
    extract(tmp_path / "s", tmp_path / "m", flush_rows=4)  # 4 segments
    reader = FeatureStore.open_reader(tmp_path / "s")
    monkeypatch.setattr(reader_mod, "GATHER_MIN_BYTES_PER_THREAD", 1)  # thread even these tiny batches
    parts, real = [], reader_mod._copy_rows
    monkeypatch.setattr(reader_mod, "_copy_rows",
                        lambda *a: (parts.append(threading.get_ident()), real(*a))[1])
    rng = np.random.default_rng(0)
    order = [f"img{i:02d}" for i in rng.integers(0, 13, 200)]  # every segment, repeats, random order
    expected = np.stack([np.asarray(reader.get(m)) for m in order])
    pos = reader.positions(order)
    for threads in (1, 2, 3):
        parts.clear()
        got = reader.get_many_at(pos, threads=threads)
        assert got.tobytes() == expected.tobytes()
        assert len(parts) == threads  # the caller's part and threads - 1 in the pool
        assert threading.get_ident() in parts and (threads == 1 or len(set(parts)) > 1)
    frozen = np.empty_like(expected)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        reader.get_many_at(pos, out=frozen, threads=2)
    assert reader.get_many_at(pos, threads=2).tobytes() == expected.tobytes()  # the pool still works
