"""Multi-task sampler and loader: roundrobin counts, determinism, DDP sharding, soft labels, worker safety."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from pipelines.tasks import MultiTaskBatchSampler, TaskDataset, multitask_loader, open_task_table
from vlpet.batch import task_batch_sizes

SIZES = {"vqa": 1000, "gqa": 1700, "nlvr2": 230, "coco": 530}
BS = task_batch_sizes(60, list(SIZES))  # 60, 100, 20, 50


def _batches(**kw):
    return [(b[0][0], [i for _, i, _ in b]) for b in MultiTaskBatchSampler(SIZES, BS, **kw)]


def test_roundrobin_every_task_all_its_batches_once_per_epoch():
    batches = _batches(seed=0, epoch=0)
    counts = Counter(t for t, _ in batches)
    assert counts == {t: math.ceil(n / BS[t]) for t, n in SIZES.items()}
    for t, n in SIZES.items():
        seen = [i for task, idx in batches if task == t for i in idx]
        assert sorted(seen) == list(range(n)), t  # every example exactly once
    assert all(len(idx) <= BS[t] for t, idx in batches)
    # interleaved, not task after task
    assert len({t for t, _ in batches[:10]}) > 1


def test_same_seed_and_epoch_same_batches_other_epoch_other_order():
    assert _batches(seed=3, epoch=1) == _batches(seed=3, epoch=1)
    assert _batches(seed=3, epoch=1) != _batches(seed=3, epoch=2)
    assert [t for t, _ in _batches(seed=3, epoch=1)] != [t for t, _ in _batches(seed=3, epoch=2)]
    s = MultiTaskBatchSampler(SIZES, BS, seed=3)
    s.set_epoch(2)
    assert [(b[0][0], [i for _, i, _ in b]) for b in s] == _batches(seed=3, epoch=2)


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_ranks_are_disjoint_and_cover_the_epoch(world):
    full = _batches(seed=1, epoch=4)
    shards = [_batches(seed=1, epoch=4, rank=r, world_size=world, pad=False) for r in range(world)]
    keys = [(t, i) for shard in shards for t, idx in shard for i in idx]
    assert len(keys) == len(set(keys)) == sum(SIZES.values())
    assert set(keys) == {(t, i) for t, idx in full for i in idx}
    padded = [len(MultiTaskBatchSampler(SIZES, BS, seed=1, epoch=4, rank=r, world_size=world)) for r in range(world)]
    assert len(set(padded)) == 1 and padded[0] == math.ceil(len(full) / world)  # equal steps on every rank


@pytest.mark.parametrize("mode", ["roundrobin", "proportional", "temperature"])
@pytest.mark.parametrize("world, pad, drop_last, start", [(1, True, False, 0), (3, True, True, 2),
                                                          (3, False, False, 5), (4, True, False, 0)])
def test_len_is_counted_without_building_the_epoch_and_matches_what_iterates(mode, world, pad, drop_last, start):
    sizes = {"a": 7, "b": 25, "c": 0}  # batches: a 3 (2 full), b 9 (8 full), c none
    bs = {"a": 3, "b": 3, "c": 4}
    per_task = 2 + 8 if drop_last else 3 + 9
    for rank in range(world):
        s = MultiTaskBatchSampler(sizes, bs, mode=mode, seed=5, epoch=1, rank=rank, world_size=world, pad=pad,
                                  drop_last=drop_last, start=start)
        padded = math.ceil(per_task / world) * world if pad else per_task
        expected = max(0, len(range(rank, padded, world)) - start)  # hand count: ranks take r, r+W, ...
        assert len(s) == expected == len(list(s)), (rank, mode)
        if drop_last:
            assert all(len(b) == 3 for b in s)


def test_padding_gives_every_rank_a_batch_even_with_more_ranks_than_batches():
    lens = [len(list(MultiTaskBatchSampler({"a": 4}, {"a": 2}, rank=r, world_size=5))) for r in range(5)]
    assert lens == [1] * 5  # 2 batches dealt to 5 ranks: the padding cycles through them


def test_a_million_example_epoch_is_planned_without_python_lists_of_every_index():
    s = MultiTaskBatchSampler({"gqa": 1_087_640, "vqa": 658_111}, {"gqa": 100, "vqa": 60}, seed=2)
    first = next(iter(s))
    assert len(first) in (60, 100) and len({i for _, i, _ in first}) == len(first)
    plan = s._plan()
    assert len(plan) == len(s) == 10_877 + 10_969
    assert all(isinstance(idx, np.ndarray) and idx.base is not None for _, idx in plan[:50])  # views, not copies


@pytest.mark.parametrize("mode, power", [("proportional", 1.0), ("temperature", 0.5)])
def test_proportional_and_temperature_sampling(mode, power):
    sizes = {"a": 9000, "b": 1000}
    bs = {"a": 10, "b": 10}
    batches = [b[0][0] for e in range(5) for b in MultiTaskBatchSampler(sizes, bs, mode=mode, epoch=e, temperature=2.0)]
    assert len(batches) == 5 * 1000
    share = Counter(batches)["b"] / len(batches)
    expected = 1000**power / (1000**power + 9000**power)
    assert abs(share - expected) < 0.03
    assert _batches(mode=mode, seed=0, epoch=0) == _batches(mode=mode, seed=0, epoch=0)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="unknown multitask sampling mode 'balanced'"):
        MultiTaskBatchSampler(SIZES, BS, mode="balanced")
    with pytest.raises(ValueError, match="rank 2 not in"):
        MultiTaskBatchSampler(SIZES, BS, rank=2, world_size=2)


def test_vqa_soft_labels_resampled_per_epoch_deterministically(task_tables):
    paths = task_tables.paths
    d = TaskDataset(paths["vqa"])
    multi = [i for i in range(len(d)) if len(d.example(i)["references"]) > 1]
    assert multi, "the synthetic VQA split should have soft labels with several answers"
    i = multi[0]
    assert d.example(i, 0)["target"] == d.example(i, 0)["target"]
    draws = {(d.example(i, e)["target"], d.example(i, e)["weight"]) for e in range(40)}
    assert len({a for a, _ in draws}) > 1  # fresh sample each epoch
    table = open_task_table(paths["vqa"])  # answers/scores as stored
    scores = dict(zip(table["targets"][i].as_py(), table["scores"][i].as_py(), strict=True))
    assert all(w == pytest.approx(scores[a]) for a, w in draws)


def _run_loader(paths, tok, workers, epoch):
    datasets = {t: TaskDataset(p, seed=5) for t, p in paths.items()}
    loader = multitask_loader(datasets, tok, 6, seed=5, epoch=epoch, num_workers=workers)
    return [(b.task, b.example_ids, b.input_ids, b.labels, b.vis_feats, b.loss_weights) for b in loader]


def test_dataloader_workers_give_the_same_batches(task_tables, task_tokenizer):
    paths = task_tables.paths
    tok = task_tokenizer
    serial = _run_loader(paths, tok, 0, epoch=1)
    parallel = _run_loader(paths, tok, 2, epoch=1)
    assert len(serial) == len(parallel) > 0
    assert {b[0] for b in serial} == set(paths)
    for a, b in zip(serial, parallel, strict=True):
        assert a[0] == b[0] and a[1] == b[1]
        for x, y in zip(a[2:], b[2:], strict=True):
            assert (x is None and y is None) or torch.equal(x, y)
    sizes = {t: len(TaskDataset(p)) for t, p in paths.items()}
    counts = Counter(b[0] for b in serial)
    assert counts == {t: math.ceil(n / task_batch_sizes(6, [t])[t]) for t, n in sizes.items()}


def test_dataset_pickles_without_open_maps_for_spawned_workers(task_tables):
    import pickle

    paths = task_tables.paths
    d = TaskDataset(paths["nlvr2"])
    first = d[0]
    state = d.__getstate__()
    assert state["_table"] is None and state["_reader"] is None
    clone = pickle.loads(pickle.dumps(d))
    again = clone[0]
    assert again["example_id"] == first["example_id"] and (again["vis"] == first["vis"]).all()


def test_tables_over_one_store_share_one_reader_while_in_use(task_tables):
    import gc

    from pipelines.tasks import loader

    paths = task_tables.paths
    train, evaluation = TaskDataset(paths["coco"]), TaskDataset(paths["coco"], train=False)
    other = TaskDataset(paths["nlvr2"])
    for d in (train, evaluation, other):
        d.prefetch([0])  # opens the table and its reader
    assert train._reader is evaluation._reader  # one set of maps: each page mapped (and counted) once
    assert other._reader is not train._reader
    key = (str(train.store_path.resolve()), train.snapshot_id)
    assert loader._READERS[key] is train._reader
    del train, evaluation
    gc.collect()
    assert key not in loader._READERS  # released with the last dataset using it
    assert other.example(0)["vis"] is not None


def test_batched_examples_match_the_table_and_the_store_in_request_order(task_tables):
    from features.store import FeatureStore
    from vlpet.batch import stack_features

    paths = task_tables.paths
    for task, path in paths.items():
        d = TaskDataset(path, seed=2)
        reader = FeatureStore.open_reader(d.store_path, d.snapshot_id)
        ids, media = d.column("example_id"), d.column("media_ids")
        idx = [len(d) - 1, 0, len(d) // 2, 1, len(d) - 1]  # out of order, with a repeat
        batch = d.examples(idx, epoch=3)
        for i, ex in zip(idx, batch, strict=True):
            row = d.row_of(i)
            assert ex["example_id"] == ids[row], task
            want = reader.get(media[row][0]) if len(media[row]) == 1 else np.stack([reader.get(m) for m in media[row]])
            assert np.array_equal(np.asarray(ex["vis"]), want), task
            single = d.example(i, 3)
            assert single["target"] == ex["target"] and single.get("weight") == ex.get("weight"), task
        if not reader.spec.ragged:  # fixed shapes: one gathered batch array, handed on without another copy
            feats = stack_features([ex["vis"] for ex in batch])
            assert feats.data_ptr() == np.asarray(batch[0]["vis"]).ctypes.data and feats.shape[0] == len(idx)
    with pytest.raises(IndexError, match="out of range"):
        TaskDataset(paths["vqa"]).examples([0, 10**6])


class _SharedFlag:
    """collate_fn run inside a worker: the collated batch and whether its features already live in shared memory."""

    def __init__(self, tok):
        from pipelines.tasks import MultiTaskCollator

        self.collate = MultiTaskCollator(tok)

    def __call__(self, examples):
        from vlpet import batch as vb

        batch = self.collate(examples)
        return batch, batch.vis_feats.is_shared(), len(vb._RING)


def _in_received_slot(t: torch.Tensor) -> bool:
    from vlpet import batch as vb

    return any(s.data_ptr() <= t.data_ptr() < s.data_ptr() + s.numel() for s in vb._SEEN.values())


def test_worker_batches_come_through_a_reused_shared_memory_ring(task_tables, task_tokenizer):
    from pipelines.tasks import MultiTaskDataset

    paths = task_tables.paths
    data = MultiTaskDataset({t: TaskDataset(p) for t, p in paths.items()})
    sampler = MultiTaskBatchSampler(data.sizes(), task_batch_sizes(6, list(paths)), seed=1)
    serial = [(b.example_ids, b.vis_feats) for b, _, _ in torch.utils.data.DataLoader(
        data, batch_sampler=sampler, collate_fn=_SharedFlag(task_tokenizer))]

    def workers():
        return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=_SharedFlag(task_tokenizer),
                                           num_workers=2)

    # A consumer that drops each batch before the next: the slots come back to the workers and are reused,
    # so each of the 2 workers made len(serial) / 2 batches but holds far fewer slots than that.
    slots_seen = []
    for (ids, feats), (b, flag, slots) in zip(serial, workers(), strict=True):
        assert flag and _in_received_slot(b.vis_feats)  # written into shared memory by the worker, not copied
        assert b.example_ids == ids and torch.equal(b.vis_feats, feats)
        slots_seen.append(slots)
        del b
    assert len(serial) > 10 and 2 * max(slots_seen) < len(serial)
    # A consumer that keeps every batch: no slot it holds is handed out again (the data stay as received)
    kept = [b for b, _, _ in workers()]
    assert len(kept) == len(serial)
    for (ids, feats), b in zip(serial, kept, strict=True):
        assert b.example_ids == ids and torch.equal(b.vis_feats, feats)


def test_sampler_announces_each_batch_ahead_once_and_in_order():
    seen = []
    s = MultiTaskBatchSampler(SIZES, BS, seed=2, epoch=1, lookahead=lambda t, idx, e: seen.append((t, list(idx), e)),
                              lookahead_depth=2)
    it = iter(s)
    first = next(it)
    assert len(seen) == 3  # the first two batches, then the one two steps ahead of the first
    yielded = [first, *it]
    assert [(b[0][0], [i for _, i, _ in b], 1) for b in yielded] == seen  # every batch announced exactly once
    assert _batches(seed=2, epoch=1) == [(b[0][0], [i for _, i, _ in b]) for b in yielded]  # same batches


def _segment_rows(store_path, snapshot_id):
    """media id -> its feature values, read from the snapshot's index and segment files with pyarrow alone
    (not through the reader): the independent expectation for the loader's gathers."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def read(path):
        with pa.memory_map(str(path)) as src:
            return ipc.open_file(src).read_all()

    index = read(store_path / "snapshots" / snapshot_id / "index.arrow").to_pylist()
    segments, out = {}, {}
    for rec in index:
        if rec["status"] == "ok":
            if rec["segment"] not in segments:
                segments[rec["segment"]] = read(store_path / "segments" / f"{rec['segment']}.arrow").column("feat")
            out[rec["media_id"]] = segments[rec["segment"]][rec["row"]].values.to_numpy(zero_copy_only=False)
    return out


def test_batches_hold_the_stores_bytes_in_any_order_and_held_batches_stay_intact(task_tables):
    paths = task_tables.paths
    for task in ("vqa", "nlvr2", "coco", "gqa"):
        d = TaskDataset(paths[task], seed=4)
        raw = _segment_rows(d.store_path, d.snapshot_id)
        media = d.column("media_ids")
        n = len(d)
        orders = [list(range(n))[::-1], [n // 2, 0, n - 1, n // 2, 1], list(np.random.default_rng(0).permutation(n))]
        held = []
        for idx in orders:
            b = d.batch(idx, epoch=1)
            want = np.stack([np.concatenate([raw[m] for m in media[d.row_of(i)]]) for i in idx])
            got = np.asarray(b.vis).reshape(len(idx), -1)
            assert got.tobytes() == want.astype(got.dtype).tobytes(), task  # byte for byte, request order
            held.append((b, want))
        for _ in range(5):  # more batches of the same sizes while the first ones are still held
            for idx in orders:
                d.batch(idx[::-1], epoch=2)
        for b, want in held:  # never overwritten: the reused buffers are only ones nobody refers to
            assert np.asarray(b.vis).reshape(len(b), -1).tobytes() == want.astype(b.vis.dtype).tobytes(), task


def test_batch_buffers_are_reused_once_released(task_tables):
    d = TaskDataset(task_tables.paths["vqa"])
    idx = list(range(min(len(d), 8)))
    b = d.batch(idx)
    addr = b.vis.ctypes.data
    again = d.batch(idx)
    assert again.vis.ctypes.data != addr  # the first batch is still held: another buffer
    del b
    third = d.batch(idx[::-1])
    assert third.vis.ctypes.data == addr  # released: its buffer serves the next batch (no new allocation)


def test_gathers_use_the_reader_threads_in_the_main_process_and_one_in_a_worker(task_tables, monkeypatch):
    from features.store.reader import SnapshotReader

    d = TaskDataset(task_tables.paths["vqa"])
    seen, real = [], SnapshotReader.get_many_at
    monkeypatch.setattr(SnapshotReader, "get_many_at",
                        lambda self, pos, out=None, *, threads=None: (seen.append(threads),
                                                                      real(self, pos, out, threads=threads))[1])
    want = d.batch([0, 1, 2]).vis.copy()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())  # as inside a DataLoader worker
    assert d.batch([0, 1, 2]).vis.tobytes() == want.tobytes()
    assert seen == [None, 1]  # the reader's default (GATHER_THREADS), then one thread


def test_answer_draws_follow_the_scores_and_do_not_depend_on_the_batch(task_tables):
    paths = task_tables.paths
    d = TaskDataset(paths["vqa"], seed=9)
    table = open_task_table(paths["vqa"])
    targets, scores = table["targets"].to_pylist(), table["scores"].to_pylist()
    multi = [i for i in range(len(d)) if targets[i] and len(targets[i]) > 1]
    assert multi
    i = multi[0]
    epochs = 4000
    counts = Counter(d.batch([i], epoch=e).targets[0] for e in range(epochs))
    total = sum(scores[i])
    for answer, score in zip(targets[i], scores[i], strict=True):
        p = score / total
        sd = math.sqrt(epochs * p * (1 - p))
        assert abs(counts[answer] - epochs * p) <= 5 * sd + 1, (answer, counts, p)  # 5 binomial sd
    # the draw is a function of (seed, epoch, task, index) alone: the same in any batch
    others = [j for j in range(len(d)) if j != i][:5]
    for e in range(20):
        alone = d.batch([i], epoch=e)
        mixed = d.batch([*others, i, others[0]], epoch=e)
        assert mixed.targets[len(others)] == alone.targets[0]
        assert mixed.weights[len(others)] == alone.weights[0] == scores[i][targets[i].index(alone.targets[0])]
    assert TaskDataset(paths["vqa"], seed=9).batch(multi, epoch=3).targets == d.batch(multi, epoch=3).targets


def test_a_batch_pickles_as_its_own_values(task_tables):
    import pickle

    d = TaskDataset(task_tables.paths["vqa"], seed=1)
    b = d.batch([3, 1, 2], epoch=2)
    clone = pickle.loads(pickle.dumps(b))
    assert len(pickle.dumps(b)) < 10 * b.vis.nbytes + 100_000  # not the task table's whole columns
    assert clone.text == b.text and clone.targets == b.targets and clone.column("example_id") == b.column("example_id")
    assert np.array_equal(clone.vis, b.vis) and [clone[j]["target"] for j in range(3)] == b.targets
