"""One writer per store (issue 16): a second extraction waits for the first (or, with --no-wait, exits with a
clear error) instead of doing the work twice; orphan runs of earlier writers are removed. Real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from features.engine import extract
from features.extractors import get_extractor
from features.store import FeatureStore, StoreBusyError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import pathlib, sys, time
    sys.path.insert(0, {root!r})
    from features.store.layout import Layout
    with Layout(sys.argv[1]).writer_lock():
        print("held", flush=True)
        release, t0 = pathlib.Path(sys.argv[2]), time.monotonic()
        while not release.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.02)
""")


def _media(d: Path, n: int = 2) -> Path:
    d.mkdir(parents=True)
    for k in range(n):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(d / f"img{k}.jpg")
    return d


def _hold(store: Path, release: Path) -> subprocess.Popen:
    store.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT)), str(store), str(release)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture(scope="module")
def vit():
    return get_extractor("clip-vit-b32-grid", device="cpu", weights="random")


def test_no_wait_exits_with_a_clear_error_and_writes_nothing(tmp_path, vit):
    from flows.cli import app

    store, release = tmp_path / "store", tmp_path / "release"
    holder = _hold(store, release)
    try:
        res = CliRunner().invoke(app, ["extract", "--media", str(_media(tmp_path / "m")), "--store", str(store),
                                       "--extractor", "clip-vit-b32-grid", "--device", "cpu", "--workers", "0",
                                       "--no-wait", "--weights", "random"])
        assert res.exit_code == 2, res.output
        assert "another writer holds the store" in res.output and f"pid {holder.pid}" in res.output
        assert "Traceback" not in res.output
        assert not list(store.glob("snapshots/*")) and not list(store.glob("runs/*"))
        with pytest.raises(StoreBusyError):
            extract(tmp_path / "m", store, extractor=vit, workers=0, progress=False, wait=False)
    finally:
        release.touch()
        holder.wait(timeout=30)


def test_a_second_writer_waits_then_finds_the_work_done_and_orphans_are_removed(tmp_path, vit):
    media, store, release = _media(tmp_path / "m", 3), tmp_path / "store", tmp_path / "release"
    first = extract(media, store, extractor=vit, workers=0, progress=False)
    # An orphan of a writer that died before committing on top of an older snapshot: it can never commit.
    orphan = store / "runs" / "run-orphan"
    (orphan / "shards" / "0").mkdir(parents=True)
    (orphan / "RUN.json").write_text('{"run_id": "run-orphan", "parent": "000000-000000000000"}')
    holder = _hold(store, release)
    waited: list[str] = []

    def on_wait(who: str) -> None:  # called once, before blocking: let the holder finish now
        waited.append(who)
        release.touch()

    t0 = time.monotonic()
    try:
        again = extract(media, store, extractor=vit, workers=0, progress=False, on_wait=on_wait)
    finally:
        release.touch()
        holder.wait(timeout=30)
    assert waited and f"pid {holder.pid}" in waited[0] and time.monotonic() - t0 < 60
    assert again.extracted == 0 and again.snapshot == first.snapshot  # the first writer's work, not redone
    assert not orphan.exists() and FeatureStore.open(store).runs() == []


TWO = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    sys.path.insert(0, {root!r})
    from features.engine import extract
    r = extract(sys.argv[1], sys.argv[2], extractor="clip-vit-b32-grid", device="cpu", workers=0, progress=False,
                on_wait=lambda who: print("waited", flush=True), weights="random")
    print(json.dumps({{"extracted": r.extracted, "snapshot": r.snapshot}}), flush=True)
""")


def test_two_extractions_at_once_do_the_work_once(tmp_path):
    media, store = _media(tmp_path / "m", 4), tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, "-c", TWO.format(root=str(ROOT)), str(media), str(store)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    import json

    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert sorted(r["extracted"] for r in results) == [0, 4]  # one did the work, the other reused it
    assert results[0]["snapshot"] == results[1]["snapshot"]
    assert "StaleRunError" not in outs[0][1] + outs[1][1]
    assert FeatureStore.open(store).runs() == [] and len(FeatureStore.open(store).snapshot_ids()) == 1
