"""Feature store: incremental re-runs (add / change / delete), snapshot isolation, gc, weights identity."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import numpy as np
import pytest

from .test_store_support import IMAGE_SPEC, extract, fake_features, items_of, write_media

from features.store import FeatureStore, SnapshotNotFoundError, StaleRunError, StoreError


def _features(reader) -> dict[str, bytes]:
    return {m: reader.get(m).tobytes() for m in reader.media_ids}


def test_incremental_add_change_delete_then_gc(tmp_path):
    media, store_path = tmp_path / "media", tmp_path / "store"
    write_media(media, [f"img{i}" for i in range(8)])
    calls: list[str] = []
    snap1 = extract(store_path, media, counter=calls, flush_rows=1)  # one segment per sample
    assert sorted(calls) == [f"img{i}" for i in range(8)]
    r1 = FeatureStore.open_reader(store_path)
    old = _features(r1)

    # nothing changed: nothing extracted, no new snapshot
    calls.clear()
    assert extract(store_path, media, counter=calls).id == snap1.id and calls == []

    # add two, change one (same name, new bytes), delete one, rename one (same bytes, new name)
    write_media(media, ["new1", "new2"])
    write_media(media, ["img3"], version=1)
    (media / "img5.jpg").unlink()
    (media / "img6.jpg").rename(media / "img6_renamed.jpg")
    store = FeatureStore.open(store_path)
    plan = store.plan(items_of(media))
    assert sorted(i.media_id for i in plan.to_extract) == ["img3", "new1", "new2"]
    assert plan.deleted == ["img5", "img6"] and plan.changed == ["img3"]
    assert "img6_renamed" in {i.media_id for i in plan.reused}
    calls.clear()
    snap2 = extract(store_path, media, counter=calls)
    assert sorted(calls) == ["img3", "new1", "new2"]  # only new or changed content was extracted
    assert snap2.parent == snap1.id and snap2.seq == 2
    assert snap2.counts["new"] == 3 and snap2.counts["reused"] == 6 and snap2.counts["deleted"] == 2
    r2 = FeatureStore.open_reader(store_path)
    assert r2.snapshot_id == snap2.id
    assert "img5" not in r2 and "img6" not in r2 and "img6_renamed" in r2
    assert r2.get("img6_renamed").tobytes() == old["img6"]
    assert r2.get("img3").tobytes() == fake_features((media / "img3.jpg").read_bytes(), IMAGE_SPEC).tobytes()
    assert r2.get("img3").tobytes() != old["img3"]
    for m in ("img0", "img1", "img7"):
        assert r2.get(m).tobytes() == old[m]

    # the old snapshot is still readable, by id, from a new reader and from the one opened before
    r1b = FeatureStore.open_reader(store_path, snapshot=snap1.id)
    assert _features(r1b) == old == _features(r1)
    assert [s.id for s in store.snapshots()] == [snap1.id, snap2.id]
    assert store.verify().ok

    # gc keeps the latest: snapshot 1 and the segments only it used are gone
    seg_only_old = set(snap1.segments) - set(snap2.segments)
    assert len(seg_only_old) == 2  # the old img3 and the deleted img5
    report = store.gc()
    assert report.removed_snapshots == [snap1.id] and set(report.removed_segments) == seg_only_old
    with pytest.raises(SnapshotNotFoundError):
        FeatureStore.open_reader(store_path, snapshot=snap1.id)
    assert _features(FeatureStore.open_reader(store_path)) == _features(r2)
    assert store.verify().ok


def test_gc_keeps_named_snapshots_and_dry_run(tmp_path):
    media, store_path = tmp_path / "media", tmp_path / "store"
    ids = []
    for k in range(3):
        write_media(media, [f"gen{k}"])
        ids.append(extract(store_path, media).id)
    store = FeatureStore.open(store_path)
    dry = store.gc(keep=[ids[0][:8]], dry_run=True)  # a unique id prefix is accepted
    assert dry.removed_snapshots == [ids[1]] and store.snapshot_ids() == ids
    rep = store.gc(keep=[ids[0]])
    assert rep.kept == [ids[0], ids[2]] and store.snapshot_ids() == [ids[0], ids[2]]
    assert rep.removed_segments == []  # every segment is still used by a kept snapshot
    assert FeatureStore.open_reader(store_path, snapshot=ids[0]).media_ids == ["gen0"]
    with pytest.raises(SnapshotNotFoundError):
        store.gc(keep=["000009-nope"])
    assert store.verify().ok


def test_readers_never_see_uncommitted_data(tmp_path):
    media, store_path = tmp_path / "media", tmp_path / "store"
    write_media(media, ["a", "b"])
    snap1 = extract(store_path, media)
    write_media(media, ["c", "d", "e"])
    store = FeatureStore.open(store_path)
    items = items_of(media)
    store.plan(items)
    run = store.begin_run()
    w = run.shard_writer("0", flush_rows=1)
    for it in items:
        if it.media_id in ("c", "d"):
            w.add(it, fake_features((media / it.rel_path).read_bytes(), IMAGE_SPEC))
    assert len(run.done_hashes()) == 2  # flushed to staging
    during = FeatureStore.open_reader(store_path)  # opened mid-run
    assert during.snapshot_id == snap1.id and during.media_ids == ["a", "b"] and "c" not in during
    w.add(next(i for i in items if i.media_id == "e"), np.zeros((49, 64), np.float16))
    w.close()
    snap2 = store.commit(run, items)
    assert during.media_ids == ["a", "b"]  # a reader stays on its snapshot
    assert FeatureStore.open_reader(store_path).media_ids == ["a", "b", "c", "d", "e"]
    assert snap2.id != snap1.id


def test_stale_runs_and_weights_identity(tmp_path):
    media, store_path = tmp_path / "media", tmp_path / "store"
    write_media(media, ["a", "b"])
    extract(store_path, media)
    store = FeatureStore.open(store_path)
    store.plan(items_of(media))
    stale = store.begin_run()
    write_media(media, ["c"])
    extract(store_path, media)  # another commit lands first
    with pytest.raises(StaleRunError):
        store.commit(stale, items_of(media))
    # (the run id is derived from spec + parent, so the other commit used, committed and removed the same
    # staging area; a staging area whose parent is no longer the latest is garbage either way)
    assert not stale.exists() and store.gc().removed_runs == []

    # features of other weights are never silently mixed: commit refuses, plan(weights=...) re-extracts all
    write_media(media, ["d"])
    with pytest.raises(StoreError, match="weights"):
        extract(store_path, media, metadata={"weights": "sha256:other", "random_init": False})
    plan = store.plan(items_of(media), weights="sha256:other")
    assert len(plan.to_extract) == 4 and plan.reused == []
