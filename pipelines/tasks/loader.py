"""Multi-task training data: per-task Datasets over task tables + a single-task-batch sampler (docs/data.md §5).

* ``TaskDataset`` maps a task table and opens the feature snapshot lazily, once per process (DataLoader
  workers included): no file is opened per sample, features come as zero-copy views of the mapped store.
* Items are addressed by ``(task, index, epoch)`` keys so a worker needs no shared state to be deterministic:
  VQA/GQA soft-label answers are re-sampled every epoch with an RNG seeded by (seed, epoch, task, index),
  hence ``num_workers=0`` and ``num_workers=2`` yield identical batches.
* Batches are gathered, not built sample by sample: the DataLoader calls ``MultiTaskDataset.__getitems__``,
  which takes each task-table column once for the batch (Arrow ``take``) and reads the features with one
  ``get_many`` into one batch array, which ``collate`` uses as is. Workers open the tables and stores
  themselves (maps are never pickled), receive only keys, and return the features through a ring of
  shared-memory buffers they reuse (``vlpet.batch.ring_tensor``; a fresh shared segment per batch cost
  ~200 us of page faults per sample here) and the small tensors as bytes.
* ``multitask_loader`` has the sampler announce the batch two steps ahead (``MultiTaskDataset.prefetch``):
  features not yet in memory are requested from the disk all at once while the current batch is served.
* ``MultiTaskBatchSampler`` yields lists of keys of one task. ``roundrobin`` (upstream default): every task's
  batches once per epoch, the task order shuffled with ``random.Random(seed + epoch)``; ``proportional`` /
  ``temperature``: each step draws a task with p ∝ n_examples (^ 1/T), same epoch length. DDP: the epoch's
  global batch list is identical on every rank and rank r takes batches r, r+W, …; disjoint and covering
  (``pad=True`` repeats the first batches so all ranks step equally, as DistributedSampler does).
"""

from __future__ import annotations

import hashlib
import os
import random
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch.utils.data

from features.store import FeatureStore
from pipelines.tasks.build import open_task_table, task_table_metadata
from vlpet.batch import ExampleBatch, VLBatch, batch_buffer, collate, in_dataloader_worker, task_format

Key = tuple[str, int, int]  # (task, example index, epoch)


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def answer_uniforms(seed: int, epoch: int, task: str, indices: np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per example index, a keyed hash of (seed, epoch, task, index): the soft-label draw
    of an example depends on nothing else (not on its batch, its worker or the other examples), and a whole
    batch is drawn with a few numpy operations (splitmix64's finaliser over a blake2b key of (seed, epoch, task);
    stable across processes and platforms, unlike ``hash()``)."""
    key = np.uint64(int.from_bytes(hashlib.blake2b(f"{seed}/{epoch}/{task}".encode(), digest_size=8).digest(),
                                   "little"))
    with np.errstate(over="ignore"):
        z = key + (np.asarray(indices, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _list_parts(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, pa.ChunkedArray]:
    """(lengths, starts into the flattened values, flattened values) of a list column; nulls have length 0."""
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths, np.cumsum(lengths) - lengths, pc.list_flatten(col)


_READERS: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()


def _shared_reader(store_path: Path, snapshot_id: str) -> Any:
    """One reader per (store, snapshot) in a process, shared by the task tables over it (VQA and COCO
    captions both read the COCO features): one set of maps, so each feature page is mapped, and counted in
    the process's resident memory, once. Held only while a dataset uses it."""
    key = (str(Path(store_path).resolve()), snapshot_id)
    reader = _READERS.get(key)
    if reader is None:
        reader = _READERS[key] = FeatureStore.open_reader(store_path, snapshot_id)
    return reader


class TaskDataset(torch.utils.data.Dataset):
    """Examples of one task table. ``train=True`` expands caption tasks to one example per caption;
    evaluation keeps one example per media with every caption as references."""

    def __init__(self, table_path: Path | str, store_path: Path | str | None = None, *, train: bool = True,
                 seed: int = 0) -> None:
        self.table_path = Path(table_path)
        table = open_task_table(self.table_path)
        meta = task_table_metadata(table.schema)
        self.task = meta["task"]
        self.fmt = task_format(self.task)
        self.snapshot_id = meta["snapshot_id"]
        self.store_path = Path(store_path or meta["store_path"])
        self.train = train
        self.seed = seed
        self.n_rows = table.num_rows
        self._expand = train and self.fmt.is_caption
        if self._expand:  # example k -> (row, caption j): from the list lengths, no Python per-row loop
            lengths = pc.list_value_length(table.column("targets")).to_numpy(zero_copy_only=False)
            self._rows = np.repeat(np.arange(self.n_rows, dtype=np.int64), lengths)
            starts = np.cumsum(lengths) - lengths
            self._caption = np.arange(len(self._rows), dtype=np.int64) - np.repeat(starts, lengths)
        self._pid: int | None = None
        self._table: pa.Table | None = None
        self._reader: Any = None

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in self._PER_PROCESS and k != "fmt"}
        state.update(_pid=None, _table=None, _reader=None)  # reopened lazily in the new process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.fmt = task_format(self.task)  # the catalogue entry (holds mapping proxies, which do not pickle)

    _PER_PROCESS = ("_cols", "_media_k", "_media_start", "_media_flat", "_media_pos", "_fixed_k", "_answer_table")

    def _open(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        self._table = open_task_table(self.table_path)
        reader = _shared_reader(self.store_path, self.snapshot_id)
        if reader.snapshot_id != self.snapshot_id:
            raise ValueError(f"{self.table_path}: built from snapshot {self.snapshot_id}, store {self.store_path} "
                             f"opened {reader.snapshot_id}")
        self._cols = {name: self._table.column(name) for name in self._table.column_names}
        # the store's index position of every row's media, looked up once per process: a batch then reads its
        # features by numpy indexing, without a Python string or dict lookup per example
        self._media_k, self._media_start, flat = _list_parts(self._cols["media_ids"])
        self._media_flat = flat
        self._media_pos = reader.positions(flat.to_pylist())
        ks = np.unique(self._media_k)
        self._fixed_k = int(ks[0]) if len(ks) == 1 and not reader.spec.ragged else None
        self._answer_table = self._table.select(["targets"] + (["scores"] if self.fmt.answer_sampling else []))
        self._reader = reader
        self._pid = pid

    def check_features(self) -> int:
        """Verify the store segments this table's media live in (``SnapshotReader.check_segments``): raises
        ``CorruptionError`` naming a damaged segment; once per process, so training pays nothing more."""
        self._open()
        col = self._cols["media_ids"]
        return self._reader.check_segments(pc.unique(pc.list_flatten(col)).to_pylist() if len(col) else [])

    def __len__(self) -> int:
        return len(self._rows) if self._expand else self.n_rows

    def row_of(self, index: int) -> int:
        """The task-table row of example ``index`` (differs from ``index`` only for expanded caption tasks)."""
        return int(self._rows[index]) if self._expand else index

    def column(self, name: str) -> list[Any]:
        """A whole task-table column as Python objects (for evaluation code and baselines, not the hot path)."""
        self._open()
        return self._cols[name].to_pylist()

    def _value(self, name: str, row: int) -> Any:
        return self._cols[name][row].as_py()

    def example(self, index: int, epoch: int = 0) -> dict[str, Any]:
        """The example dict ``vlpet.batch.collate`` consumes (target chosen, features attached as a zero-copy
        read-only view of the store)."""
        return self.batch([index], epoch)[0]

    def examples(self, indices: Sequence[int], epoch: int = 0) -> list[dict[str, Any]]:
        """``batch(indices, epoch)`` as a list of example dicts (compatibility; ``batch`` is the fast path)."""
        b = self.batch(indices, epoch)
        return [b[j] for j in range(len(b))]

    _BATCH_COLUMNS = ("example_id", "text", "subs", "ts", "choices", "targets", "raw_answers")

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise IndexError(f"{self.table_path}: index {bad} out of range for {n} examples")
        return idx

    def batch(self, indices: Sequence[int], epoch: int = 0, *, key_indices: Sequence[int] | None = None,
              key_task: str | None = None) -> ExampleBatch:
        """The examples of ``indices`` as one columnar ``ExampleBatch``: the task-table columns taken once for
        the batch (one Arrow ``take``; turned into Python lists only when read), targets chosen for the whole
        batch with numpy, and the features read by one ``get_many_at`` into one reused batch buffer
        (``vlpet.batch.batch_buffer``: never one a batch still held elsewhere uses).

        Soft labels (VQA, GQA) are drawn ∝ score from ``answer_uniforms(seed, epoch, key_task, key_index)``,
        ``key_*`` defaulting to this table's task and ``indices`` (``ConcatTaskDataset`` passes its global ones).
        """
        self._open()
        idx = self._check(indices)
        rows = self._rows[idx] if self._expand else idx
        take = pa.array(rows, type=pa.int64())
        # each text column is taken (one Arrow `take`) when first read: a features-only consumer pays for none
        cols: dict[str, Any] = {c: _Take(self._cols[c], take) for c in self._BATCH_COLUMNS
                                if c in self._cols and c != "targets"}
        cols["references"] = _Take(self._cols["targets"], take)
        keys = idx if key_indices is None else np.asarray(key_indices, dtype=np.int64).reshape(-1)
        choose = _Choose(self, take, idx, keys, key_task or self.task, epoch)  # targets: drawn when first read
        return ExampleBatch(self.task, self._features(rows), cols, choose=choose)

    def _targets(self, take: pa.Array, idx: np.ndarray, keys: np.ndarray, key_task: str,
                 epoch: int) -> tuple[list[str | None], np.ndarray | None]:
        """Each example's training target and loss weight, for the whole batch at once."""
        self._open()
        taken = self._answer_table.take(take)
        n = len(idx)
        lengths, starts, flat = _list_parts(taken.column("targets"))
        if self._expand:  # example k -> caption j of its row
            pos = starts + self._caption[idx]
            return pc.take(flat, pa.array(pos, type=pa.int64())).to_pylist(), None
        has = lengths > 0
        first = np.where(has, starts, 0)
        if not (self.fmt.answer_sampling and self.train):  # evaluation / single-answer: the best-scored answer
            chosen = pc.take(flat, pa.array(first, type=pa.int64())).to_pylist() if len(flat) else [None] * n
            return [t if h else None for t, h in zip(chosen, has.tolist(), strict=True)], None
        scol = taken.column("scores")
        s_len, s_start, s_flat = _list_parts(scol)
        vals = s_flat.to_numpy(zero_copy_only=False).astype(np.float64) if len(s_flat) else np.zeros(0)
        if (s_len[has] != lengths[has]).any():
            j = int(np.flatnonzero(has & (s_len != lengths))[0])
            raise ValueError(f"{self.table_path}: example {idx[j]} has {lengths[j]} answers and {s_len[j]} scores")
        cs = np.concatenate([[0.0], np.cumsum(vals)])
        totals = cs[s_start + s_len] - cs[s_start]
        if (has & (totals <= 0)).any():
            j = int(np.flatnonzero(has & (totals <= 0))[0])
            raise ValueError(f"{self.table_path}: example {idx[j]}: answer scores must have a positive sum, got "
                             f"{vals[s_start[j]:s_start[j] + s_len[j]].tolist()}")
        x = answer_uniforms(self.seed, epoch, key_task, keys) * totals
        owner = np.repeat(np.arange(n), s_len)
        acc = cs[1:] - np.repeat(cs[s_start], s_len)  # running score within each example's answers
        below = np.bincount(owner, weights=(acc <= x[owner]), minlength=n).astype(np.int64)
        choice = np.minimum(below, np.maximum(lengths - 1, 0))  # first answer whose running score exceeds x
        pos = np.where(has, starts + choice, 0)
        answers = pc.take(flat, pa.array(pos, type=pa.int64())).to_pylist() if len(flat) else [None] * n
        score = np.where(has, vals[np.where(has, s_start + choice, 0)] if len(vals) else 0.0, 0.0)
        weights = score if self.fmt.answer_sampling == "weighted" else np.ones(n)
        labelled = pc.is_valid(scol).to_numpy(zero_copy_only=False)
        # labelled but no answer in the vocabulary: upstream VL-T5 trains on "" with score 0 (no loss)
        targets = [a if h else ("" if lab else None) for a, h, lab in zip(answers, has.tolist(), labelled.tolist(),
                                                                          strict=True)]
        weights = np.where(has, weights, np.where(labelled, 0.0, 1.0)).astype(np.float64)
        return targets, weights

    def prefetch(self, indices: Sequence[int]) -> int:
        """Ask the store to start reading these examples' features (see ``SnapshotReader.prefetch``)."""
        self._open()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        idx = idx[(idx >= 0) & (idx < len(self))]
        rows = self._rows[idx] if self._expand else idx
        return self._reader.prefetch_at(self._media_pos[self._media_slots(rows)])

    def _media_slots(self, rows: np.ndarray) -> np.ndarray:
        """Positions in the flattened ``media_ids`` of every media of ``rows``, in order."""
        k = self._media_k[rows]
        if self._fixed_k is not None:
            return (self._media_start[rows][:, None] + np.arange(self._fixed_k)).reshape(-1)
        return np.repeat(self._media_start[rows] - np.cumsum(k) + k, k) + np.arange(int(k.sum()))

    def _features(self, rows: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Fixed shapes: one ``(n, [k,] *shape)`` array filled by one ``get_many_at`` (a single example of one
        image: a zero-copy view of the store); ragged videos or mixed media counts: one array per example."""
        reader = self._reader
        slots = self._media_slots(rows)
        pos = self._media_pos[slots]
        if (pos < 0).any():
            m = self._media_flat[int(slots[np.flatnonzero(pos < 0)[0]])].as_py()
            raise KeyError(f"media id {m!r} is not in snapshot {reader.snapshot_id} ({self.table_path})")
        k = self._fixed_k
        if k is None:
            counts = self._media_k[rows].tolist()
            ends = np.cumsum(counts).tolist()
            out = []
            for c, e in zip(counts, ends, strict=True):
                p = pos[e - c:e]
                out.append(reader.get_at(p[0]) if c == 1 else np.stack(reader.get_many_at(p)))
            return out
        n, shape = len(rows), reader.spec.shape
        if n == 1 and k == 1:
            return reader.get_at(pos[0])[None]
        out = batch_buffer((n, k, *shape) if k > 1 else (n, *shape), reader.spec.np_dtype)
        # in a DataLoader worker one thread: the worker processes already keep the cores busy
        reader.get_many_at(pos, out=out.reshape(n * k, *shape), threads=1 if in_dataloader_worker() else None)
        return out

    def __getitem__(self, key: int | Key) -> dict[str, Any]:
        if isinstance(key, tuple):
            _, index, epoch = key
            return self.example(index, epoch)
        return self.example(key)


@dataclass
class _Choose:
    """A batch's deferred target draw (``TaskDataset._targets``): a plain object, so a batch still pickles."""

    dataset: TaskDataset
    take: pa.Array
    idx: np.ndarray
    keys: np.ndarray
    key_task: str
    epoch: int

    def __call__(self) -> tuple[list[str | None], np.ndarray | None]:
        return self.dataset._targets(self.take, self.idx, self.keys, self.key_task, self.epoch)


@dataclass
class _Take:
    """One task-table column of a batch, taken when first read (``ExampleBatch.column`` calls ``to_pylist``)."""

    column: pa.ChunkedArray
    rows: pa.Array

    def to_pylist(self) -> list[Any]:
        return self.column.take(self.rows).to_pylist()

    def __reduce__(self) -> tuple[Any, ...]:  # crossing processes: the batch's values, not the whole column
        return list, (self.to_pylist(),)


class ConcatTaskDataset(torch.utils.data.Dataset):
    """Several task tables of one task as one dataset (GQA trains on ``train`` + ``valid``, docs/method.md §5).

    Indices run through the parts in order; the per-example RNG key is the global index, so the answer
    sampling stays deterministic for (seed, epoch, index)."""

    def __init__(self, parts: Sequence[TaskDataset]) -> None:
        if not parts:
            raise ValueError("ConcatTaskDataset needs at least one task table")
        tasks = {p.task for p in parts}
        if len(tasks) != 1:
            raise ValueError(f"cannot concatenate tables of different tasks {sorted(tasks)}: "
                             f"{[str(p.table_path) for p in parts]}")
        self.parts = list(parts)
        self.task = parts[0].task
        self.fmt = parts[0].fmt
        self._starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def example(self, index: int, epoch: int = 0) -> dict[str, Any]:
        return self.examples([index], epoch)[0]

    def prefetch(self, indices: Sequence[int]) -> int:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        which = np.searchsorted(self._starts, idx, side="right") - 1
        return sum(self.parts[int(k)].prefetch(idx[which == k] - int(self._starts[k]))
                   for k in np.unique(which) if 0 <= k < len(self.parts))

    def examples(self, indices: Sequence[int], epoch: int = 0) -> list[dict[str, Any]]:
        b = self.batch(indices, epoch)
        return [b[j] for j in range(len(b))]

    def batch(self, indices: Sequence[int], epoch: int = 0) -> ExampleBatch:
        """``TaskDataset.batch`` per part (one gather per part), back in the order of ``indices``; answers are
        drawn with the global index as key, so two parts never share a draw."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= len(self))]
        if len(bad):
            raise IndexError(f"task {self.task}: index {int(bad[0])} out of range for {len(self)} examples")
        which = np.searchsorted(self._starts, idx, side="right") - 1
        parts = np.unique(which)
        got = [(np.flatnonzero(which == k), self.parts[int(k)].batch(idx[which == k] - int(self._starts[k]), epoch,
                                                                     key_indices=idx[which == k], key_task=self.task))
               for k in parts]
        if len(got) == 1:
            return got[0][1]
        return _merge(self.task, len(idx), got)

    def __getitem__(self, key: int | Key) -> dict[str, Any]:
        if isinstance(key, tuple):
            return self.example(key[1], key[2])
        return self.example(key)


def _merge(task: str, n: int, got: list[tuple[np.ndarray, ExampleBatch]]) -> ExampleBatch:
    """Batches of several parts as one, each example back at its position (``ConcatTaskDataset``)."""
    order = np.concatenate([sel for sel, _ in got])
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    batches = [b for _, b in got]
    if all(isinstance(b.vis, np.ndarray) for b in batches) and len({b.vis.shape[1:] for b in batches}) == 1:
        first = batches[0].vis
        vis: Any = batch_buffer((n, *first.shape[1:]), first.dtype)
        for sel, b in got:
            vis[sel] = b.vis
    else:
        flat_vis = [v for b in batches for v in b.vis]
        vis = [flat_vis[int(i)] for i in inv]
    names = {name for b in batches for name in b._cols}
    cols = {}
    for name in names:
        flat = [x for b in batches for x in b.column(name)]
        cols[name] = [flat[int(i)] for i in inv]
    targets = [t for b in batches for t in (b.targets or [None] * len(b))]
    weights = None
    if any(b.weights is not None for b in batches):
        weights = np.concatenate([np.ones(len(b)) if b.weights is None else b.weights for b in batches])[inv]
    return ExampleBatch(task, vis, cols, targets=[targets[int(i)] for i in inv], weights=weights)


class MultiTaskDataset(torch.utils.data.Dataset):
    """Task name → ``TaskDataset``; indexed by ``(task, index, epoch)`` keys from ``MultiTaskBatchSampler``."""

    def __init__(self, datasets: Mapping[str, TaskDataset | ConcatTaskDataset]) -> None:
        self.datasets = dict(datasets)
        self._calls = self._resident_streak = 0

    def __getitem__(self, key: Key) -> dict[str, Any]:
        task, index, epoch = key
        return self.datasets[task].example(index, epoch)

    def __getitems__(self, keys: Sequence[Key]) -> ExampleBatch | list[dict[str, Any]]:
        """A whole batch (the DataLoader calls this instead of ``__getitem__`` per key): the single-task batches
        of ``MultiTaskBatchSampler`` become one columnar ``ExampleBatch`` (``TaskDataset.batch``: one gather,
        no dict per example); mixed keys are served as a list of example dicts, task by task."""
        if not keys:
            return []
        tasks, indices, epochs = zip(*keys, strict=True)
        task, epoch = tasks[0], epochs[0]
        if tasks.count(task) == len(tasks) and epochs.count(epoch) == len(epochs):  # one task, one epoch
            return self.datasets[task].batch(indices, epoch)
        return [self[k] for k in keys]

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets.values())

    def prefetch(self, task: str, indices: Sequence[int], epoch: int = 0) -> None:
        """Start reading the features of a coming batch (``MultiTaskBatchSampler.lookahead``). Cheap once the
        store is in memory: after 4 batches that found everything resident it checks only every 16th."""
        self._calls += 1
        streak = self._resident_streak
        if streak >= 4 and self._calls % 16:
            return
        asked = self.datasets[task].prefetch(indices)
        self._resident_streak = 0 if asked else streak + 1

    def sizes(self) -> dict[str, int]:
        return {t: len(d) for t, d in self.datasets.items()}


Mode = Literal["roundrobin", "proportional", "temperature"]


@dataclass
class MultiTaskBatchSampler:
    """Single-task batches of ``(task, index, epoch)`` keys; deterministic for (seed, epoch, rank, world)."""

    sizes: Mapping[str, int]
    batch_sizes: Mapping[str, int]
    mode: Mode = "roundrobin"
    seed: int = 0
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    shuffle: bool = True
    drop_last: bool = False
    pad: bool = True
    temperature: float = 2.0
    start: int = 0  # batches of this rank's epoch to skip (resume from a checkpoint's position)
    # Called as lookahead(task, indices, epoch) for the batch `lookahead_depth` steps ahead of the one yielded
    # (multitask_loader passes MultiTaskDataset.prefetch: cold features are read while this batch is served).
    lookahead: Any = None
    lookahead_depth: int = 2

    def __post_init__(self) -> None:
        if self.mode not in ("roundrobin", "proportional", "temperature"):
            raise ValueError(f"unknown multitask sampling mode {self.mode!r}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} not in [0, {self.world_size})")
        for t in self.sizes:
            if self.batch_sizes.get(t, 0) < 1:
                raise ValueError(f"task {t!r} has no positive batch size in {dict(self.batch_sizes)}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Start ``epoch`` at batch ``start`` (its first ``start`` batches are not produced at all)."""
        self.epoch, self.start = epoch, start

    def task_order(self, task: str, round_: int = 0) -> np.ndarray:
        """``task``'s example indices for one pass, shuffled by (seed, epoch, task, round).

        numpy's permutation (PCG64 keyed by a blake2b digest of those four): ~20 ms at GQA's 1.07M examples,
        where shuffling a Python list of them took ~0.6 s before every epoch's first batch."""
        n = self.sizes[task]
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        key = hashlib.blake2b(f"{self.seed}/{self.epoch}/{task}/{round_}".encode(), digest_size=16).digest()
        return np.random.Generator(np.random.PCG64(int.from_bytes(key, "little"))).permutation(n)

    def _task_batch_count(self, task: str) -> int:
        n, b = self.sizes[task], self.batch_sizes[task]
        return n // b if self.drop_last else -(-n // b)

    def _plan(self) -> list[tuple[str, np.ndarray]]:
        """The whole epoch's batches (all ranks, before sharding), each a view of its task's order: nothing
        per example is built until a batch is yielded."""
        orders = {t: self.task_order(t) for t in self.sizes}
        counts = {t: self._task_batch_count(t) for t in self.sizes}
        total = sum(counts.values())
        rng = random.Random(self.seed + self.epoch)
        if self.mode == "roundrobin":
            plan = [t for t in self.sizes for _ in range(counts[t])]
            rng.shuffle(plan)
        else:
            tasks = [t for t in self.sizes if counts[t]]
            power = 1.0 if self.mode == "proportional" else 1.0 / self.temperature
            weights = [self.sizes[t] ** power for t in tasks]
            plan = rng.choices(tasks, weights=weights, k=total)
        cursor = {t: 0 for t in self.sizes}
        rounds = {t: 0 for t in self.sizes}
        out = []
        for t in plan:
            if cursor[t] == counts[t]:  # proportional/temperature may revisit a task: reshuffle a new round
                rounds[t] += 1
                orders[t] = self.task_order(t, rounds[t])
                cursor[t] = 0
            b = self.batch_sizes[t]
            out.append((t, orders[t][cursor[t] * b:(cursor[t] + 1) * b]))
            cursor[t] += 1
        return out

    def _rank_plan(self) -> list[tuple[str, np.ndarray]]:
        plan = self._plan()
        if self.pad and plan and len(plan) % self.world_size:  # every rank gets as many steps (DDP)
            extra = self.world_size - len(plan) % self.world_size
            plan = plan + [plan[i % len(plan)] for i in range(extra)]
        return plan[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[Key]]:
        batches = self._rank_plan()[self.start:]
        depth = self.lookahead_depth if self.lookahead is not None else 0
        for task, idx in batches[:depth]:
            self.lookahead(task, idx, self.epoch)
        epoch = self.epoch
        for k, (task, idx) in enumerate(batches):
            if depth and k + depth < len(batches):
                self.lookahead(*batches[k + depth], epoch)
            yield list(zip(repeat(task), idx.tolist(), repeat(epoch)))  # the keys built in C, not per element

    def __len__(self) -> int:
        """Counted, not built: every mode yields each task's batch count summed (proportional/temperature draw
        that many), padded to a multiple of ``world_size``, dealt round-robin to the ranks."""
        total = sum(self._task_batch_count(t) for t in self.sizes)
        if self.pad and total % self.world_size:
            total += self.world_size - total % self.world_size
        mine = len(range(self.rank, total, self.world_size))
        return max(0, mine - self.start)


class MultiTaskCollator:
    """DataLoader ``collate_fn``: one single-task list of examples → ``VLBatch`` via ``vlpet.batch.collate``."""

    def __init__(self, tokenizer: Any, vis_dtype: Any = None) -> None:
        self.tokenizer = tokenizer
        self.vis_dtype = vis_dtype

    def __call__(self, examples: ExampleBatch | Sequence[dict[str, Any]]) -> VLBatch:
        task = examples.task if isinstance(examples, ExampleBatch) else examples[0]["task"]
        kw = {} if self.vis_dtype is None else {"vis_dtype": self.vis_dtype}
        # Targets were already chosen deterministically by the dataset, so the collate RNG is unused.
        return collate(examples, self.tokenizer, task_format(task), rng=random.Random(0), **kw)


def multitask_loader(datasets: Mapping[str, TaskDataset | ConcatTaskDataset], tokenizer: Any, base_batch_size: int, *,
                     mode: Mode = "roundrobin", seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                     num_workers: int = 0, batch_sizes: Mapping[str, int] | None = None,
                     **loader_kw: Any) -> torch.utils.data.DataLoader:
    """A DataLoader of single-task ``VLBatch``es; call ``loader.batch_sampler.set_epoch(e)`` each epoch."""
    from vlpet.batch import task_batch_sizes

    data = MultiTaskDataset(datasets)
    sizes = data.sizes()
    sampler = MultiTaskBatchSampler(sizes, batch_sizes or task_batch_sizes(base_batch_size, list(sizes)),
                                    mode=mode, seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                                    lookahead=data.prefetch)
    # A private generator: creating the loader's iterator must not draw from the global torch RNG (dropout's),
    # or a resumed run would see other dropout masks than the uninterrupted one.
    loader_kw.setdefault("generator", torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=MultiTaskCollator(tokenizer),
                                       num_workers=num_workers, **loader_kw)
