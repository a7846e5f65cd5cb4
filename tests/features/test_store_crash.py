"""Feature store: kill -9 mid-run and resume (real subprocess), crashes inside commit, shard processes merged."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_store_support import IMAGE_SPEC, ROOT, extract, items_of, write_media

from features.store import FeatureStore

HELPER = Path(__file__).with_name("test_store_support.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
NAMES = [f"img{i:02d}" for i in range(40)] + ["bad07"]


def _cmd(store: Path, media: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HELPER), str(store), str(media), *extra]


def _assert_same_store(a: Path, b: Path) -> None:
    ra, rb = FeatureStore.open_reader(a), FeatureStore.open_reader(b)
    assert ra.content_digest() == rb.content_digest()
    assert ra.all_media_ids == rb.all_media_ids and ra.hashes() == rb.hashes()
    for m in ra.media_ids:
        assert ra.get(m).tobytes() == rb.get(m).tobytes()
    assert ra.errors() == rb.errors()
    assert FeatureStore.open(a).verify().ok and FeatureStore.open(b).verify().ok


def test_sigkill_mid_run_then_rerun_is_bit_identical_and_reuses_flushed_work(tmp_path):
    media = tmp_path / "media"
    write_media(media, NAMES)
    ref = extract(tmp_path / "ref", media, flush_rows=5)  # uninterrupted run (other flush size on purpose)

    store_path, log1, log2 = tmp_path / "crash", tmp_path / "extracted-1.txt", tmp_path / "extracted-2.txt"
    proc = subprocess.Popen(_cmd(store_path, media, "--sleep", "0.05", "--flush-rows", "4", "--log", str(log1)),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while len(list(store_path.glob("runs/*/shards/*/seg-*.arrow"))) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the extraction subprocess flushed nothing"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    store = FeatureStore.open(store_path)
    assert store.snapshot_ids() == []  # nothing committed, nothing visible
    (run_dir,) = (store_path / "runs").iterdir()
    staged = store.open_run(run_dir.name).done_hashes()
    seen_before = set(log1.read_text().split())
    all_hashes = {it.sha256 for it in items_of(media)}
    assert 12 <= len(staged) < len(all_hashes) and staged <= seen_before

    out = subprocess.run(_cmd(store_path, media, "--flush-rows", "4", "--log", str(log2)), env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rerun = set(log2.read_text().split())
    assert not rerun & staged  # work flushed before the kill was not extracted again
    assert rerun | staged == all_hashes
    snap = FeatureStore.open(store_path).latest()
    assert snap.content_digest() == ref.content_digest() and snap.id == ref.id
    _assert_same_store(store_path, tmp_path / "ref")
    assert list((store_path / "runs").iterdir()) == []  # staging cleaned after the commit


class _Crash(BaseException):
    pass


@pytest.mark.parametrize("point", ["segments-linked", "snapshot-written", "published"])
def test_crash_inside_commit_then_rerun_is_identical(tmp_path, monkeypatch, point):
    media = tmp_path / "media"
    write_media(media, [*NAMES[:10], "bad07"])
    ref = extract(tmp_path / "ref", media)
    write_media(media, ["late1", "late2"])  # a second, incremental commit is the one that crashes
    ref2 = extract(tmp_path / "ref", media)

    store_path = tmp_path / "crash"
    write_media(tmp_path / "m2", [*NAMES[:10], "bad07"])
    extract(store_path, tmp_path / "m2")
    mod = importlib.import_module("features.store.store")

    def boom(name):
        if name == point:
            raise _Crash(name)

    monkeypatch.setattr(mod, "_crash_point", boom)
    write_media(tmp_path / "m2", ["late1", "late2"])
    with pytest.raises(_Crash):
        extract(store_path, tmp_path / "m2")
    monkeypatch.undo()
    store = FeatureStore.open(store_path)
    latest = store.latest()
    assert latest.id == (ref2.id if point == "published" else ref.id)  # readers see old or new, never a mix
    calls: list[str] = []
    snap = extract(store_path, tmp_path / "m2", counter=calls)
    assert calls == []  # everything was staged before the crash
    assert snap.content_digest() == ref2.content_digest() and snap.id == ref2.id
    store.gc()
    assert [p.name for p in (store_path / "snapshots").iterdir()] == [ref2.id]
    _assert_same_store(store_path, tmp_path / "ref")


def test_two_shard_processes_merge_equals_single_writer(tmp_path):
    media = tmp_path / "media"
    write_media(media, [*NAMES[:30], "bad07"])
    single = extract(tmp_path / "single", media, flush_rows=7)

    sharded = tmp_path / "sharded"
    procs = [subprocess.Popen(_cmd(sharded, media, "--shard", str(k), "--num-shards", "2", "--no-commit",
                                   "--flush-rows", "3"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in (0, 1)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = FeatureStore.open(sharded)
    items = items_of(media)
    store.plan(items)
    run = store.begin_run()  # the same staging area the shard processes wrote to
    assert run.shard_ids() == ["0", "1"]
    assert len(run.done_hashes()) == len(items)
    snap = store.commit(run, items, {"weights": "sha256:fake", "random_init": False})
    assert snap.content_digest() == single.content_digest()
    assert snap.counts == single.counts
    _assert_same_store(sharded, tmp_path / "single")
    assert IMAGE_SPEC == store.spec
