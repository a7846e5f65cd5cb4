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

import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch.utils.data

from features.store import FeatureStore
from pipelines.tasks.build import open_task_table, task_table_metadata
from vlpet.batch import VLBatch, collate, sample_answer, task_format

Key = tuple[str, int, int]  # (task, example index, epoch)


def _rng(seed: int, epoch: int, task: str, index: int) -> random.Random:
    # str seeds are hashed with sha512 by random.Random: stable across processes (unlike hash()).
    return random.Random(f"{seed}/{epoch}/{task}/{index}")


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
        state = self.__dict__.copy()
        state.update(_pid=None, _table=None, _reader=None)  # reopened lazily in the new process
        return state

    def _open(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        self._table = open_task_table(self.table_path)
        reader = FeatureStore.open_reader(self.store_path, self.snapshot_id)
        if reader.snapshot_id != self.snapshot_id:
            raise ValueError(f"{self.table_path}: built from snapshot {self.snapshot_id}, store {self.store_path} "
                             f"opened {reader.snapshot_id}")
        self._cols = {name: self._table.column(name) for name in self._table.column_names}
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
        return self.examples([index], epoch)[0]

    def examples(self, indices: Sequence[int], epoch: int = 0) -> list[dict[str, Any]]:
        """The examples of ``indices`` at once: each column is gathered with one Arrow ``take`` and the features
        of a batch with one ``get_many`` into one batch array (in shared memory inside a DataLoader worker, so
        the batch crosses to the main process without a copy); ``example(i)`` is ``examples([i])[0]``."""
        self._open()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise IndexError(f"{self.table_path}: index {bad} out of range for {n} examples")
        rows = self._rows[idx] if self._expand else idx
        take = pa.array(rows, type=pa.int64())
        names = [c for c in self._BATCH_COLUMNS if c in self._cols]
        if self.fmt.answer_sampling:
            names.append("scores")
        col = {name: self._cols[name].take(take).to_pylist() for name in names}
        raws = col.get("raw_answers")
        out = []
        for j, index in enumerate(idx.tolist()):
            targets = col["targets"][j]
            ex: dict[str, Any] = {"task": self.task, "example_id": col["example_id"][j],
                                  "text": col["text"][j] or "", "subs": col["subs"][j], "ts": col["ts"][j],
                                  "choices": col["choices"][j], "references": targets}
            if raws is not None and raws[j]:
                ex["raw_answers"] = raws[j]
            if self._expand:
                ex["target"] = targets[int(self._caption[index])]
            elif self.fmt.answer_sampling:
                scores = col["scores"][j]
                if targets and self.train:
                    answer, score = sample_answer(targets, scores, _rng(self.seed, epoch, self.task, index))
                    ex["target"] = answer
                    ex["weight"] = score if self.fmt.answer_sampling == "weighted" else 1.0
                elif self.train and scores is not None:  # labelled but no answer in the vocabulary: upstream
                    ex["target"], ex["weight"] = "", 0.0  # VL-T5 trains on "" with score 0: no loss
                elif targets:  # evaluation: the best-scored answer (tables keep answers sorted by -score)
                    ex["target"] = targets[0]
            elif targets:
                ex["target"] = targets[0]
            out.append(ex)
        for ex, vis in zip(out, self._features(col["media_ids"]), strict=True):
            ex["vis"] = vis
        return out

    def prefetch(self, indices: Sequence[int]) -> int:
        """Ask the store to start reading these examples' features (see ``SnapshotReader.prefetch``)."""
        self._open()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        idx = idx[(idx >= 0) & (idx < len(self))]
        rows = self._rows[idx] if self._expand else idx
        media = self._cols["media_ids"].take(pa.array(rows, type=pa.int64())).to_pylist()
        return self._reader.prefetch([m for ms in media for m in ms])

    _BATCH_COLUMNS = ("example_id", "text", "subs", "ts", "choices", "targets", "raw_answers", "media_ids")

    def _features(self, media: list[list[str]]) -> list[np.ndarray]:
        """One array per example: a zero-copy view for a single example of one image; otherwise rows of one
        batch array filled by one ``get_many`` (fixed shapes), or views (ragged videos)."""
        reader = self._reader
        if len(media) == 1 and len(media[0]) == 1:
            return [reader.get(media[0][0])]
        per = {len(m) for m in media}
        if reader.spec.ragged or len(per) != 1:
            return [reader.get(m[0]) if len(m) == 1 else reader.get_many(m) for m in media]
        k = per.pop()
        shape = (len(media), k, *reader.spec.shape) if k > 1 else (len(media), *reader.spec.shape)
        batch = np.empty(shape, dtype=reader.spec.np_dtype)
        reader.get_many([m for ms in media for m in ms], out=batch.reshape(len(media) * k, *reader.spec.shape))
        return list(batch)

    def __getitem__(self, key: int | Key) -> dict[str, Any]:
        if isinstance(key, tuple):
            _, index, epoch = key
            return self.example(index, epoch)
        return self.example(key)


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
        """``TaskDataset.examples`` per part (one gather per part), back in the order of ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= len(self))]
        if len(bad):
            raise IndexError(f"task {self.task}: index {int(bad[0])} out of range for {len(self)} examples")
        which = np.searchsorted(self._starts, idx, side="right") - 1
        out: list[dict[str, Any] | None] = [None] * len(idx)
        for k in np.unique(which):
            part, sel = self.parts[int(k)], np.flatnonzero(which == k)
            exs = part.examples(idx[sel] - int(self._starts[k]), epoch)
            for j, ex in zip(sel.tolist(), exs, strict=True):
                index = int(idx[j])
                if part.fmt.answer_sampling and part.train and k:
                    # re-sample with the global index so two parts never share an RNG stream
                    row = part.row_of(index - int(self._starts[k]))
                    targets, scores = part._value("targets", row), part._value("scores", row)
                    if targets and scores:
                        answer, score = sample_answer(targets, scores, _rng(part.seed, epoch, self.task, index))
                        ex["target"] = answer
                        ex["weight"] = score if part.fmt.answer_sampling == "weighted" else 1.0
                out[j] = ex
        return out  # type: ignore[return-value]

    def __getitem__(self, key: int | Key) -> dict[str, Any]:
        if isinstance(key, tuple):
            return self.example(key[1], key[2])
        return self.example(key)


class MultiTaskDataset(torch.utils.data.Dataset):
    """Task name → ``TaskDataset``; indexed by ``(task, index, epoch)`` keys from ``MultiTaskBatchSampler``."""

    def __init__(self, datasets: Mapping[str, TaskDataset | ConcatTaskDataset]) -> None:
        self.datasets = dict(datasets)
        self._calls = self._resident_streak = 0

    def __getitem__(self, key: Key) -> dict[str, Any]:
        task, index, epoch = key
        return self.datasets[task].example(index, epoch)

    def __getitems__(self, keys: Sequence[Key]) -> list[dict[str, Any]]:
        """A whole batch (the DataLoader calls this instead of ``__getitem__`` per key): single-task batches
        from ``MultiTaskBatchSampler`` become one batched gather; mixed keys are served task by task."""
        if not keys:
            return []
        tasks = {(t, e) for t, _, e in keys}
        if len(tasks) == 1:
            task, epoch = tasks.pop()
            return self.datasets[task].examples([i for _, i, _ in keys], epoch)
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

    def task_batches(self, task: str, round_: int = 0) -> list[list[int]]:
        """One pass over ``task``'s examples as batches, shuffled by (seed, epoch, task, round)."""
        idx = list(range(self.sizes[task]))
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}/{task}/{round_}").shuffle(idx)
        b = self.batch_sizes[task]
        out = [idx[i:i + b] for i in range(0, len(idx), b)]
        if self.drop_last and out and len(out[-1]) < b:
            out.pop()
        return out

    def global_batches(self) -> list[tuple[str, list[int]]]:
        """The whole epoch's batch list (all ranks), before sharding."""
        per_task = {t: self.task_batches(t) for t in self.sizes}
        total = sum(len(v) for v in per_task.values())
        rng = random.Random(self.seed + self.epoch)
        if self.mode == "roundrobin":
            order = [t for t in self.sizes for _ in per_task[t]]
            rng.shuffle(order)
        else:
            tasks = [t for t in self.sizes if per_task[t]]
            power = 1.0 if self.mode == "proportional" else 1.0 / self.temperature
            weights = [self.sizes[t] ** power for t in tasks]
            order = rng.choices(tasks, weights=weights, k=total)
        cursor = {t: 0 for t in self.sizes}
        rounds = {t: 0 for t in self.sizes}
        out = []
        for t in order:
            if cursor[t] == len(per_task[t]):  # proportional/temperature may revisit a task: reshuffle a new round
                rounds[t] += 1
                per_task[t] = self.task_batches(t, rounds[t])
                cursor[t] = 0
            out.append((t, per_task[t][cursor[t]]))
            cursor[t] += 1
        return out

    def rank_batches(self) -> list[tuple[str, list[int]]]:
        batches = self.global_batches()
        if self.pad and batches and len(batches) % self.world_size:
            batches = batches + batches[: self.world_size - len(batches) % self.world_size]
        return batches[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[Key]]:
        batches = self.rank_batches()[self.start:]
        depth = self.lookahead_depth if self.lookahead is not None else 0
        for task, idx in batches[:depth]:
            self.lookahead(task, idx, self.epoch)
        for k, (task, idx) in enumerate(batches):
            if depth and k + depth < len(batches):
                self.lookahead(*batches[k + depth], self.epoch)
            yield [(task, i, self.epoch) for i in idx]

    def __len__(self) -> int:
        return max(0, len(self.rank_batches()) - self.start)


class MultiTaskCollator:
    """DataLoader ``collate_fn``: one single-task list of examples → ``VLBatch`` via ``vlpet.batch.collate``."""

    def __init__(self, tokenizer: Any, vis_dtype: Any = None) -> None:
        self.tokenizer = tokenizer
        self.vis_dtype = vis_dtype

    def __call__(self, examples: Sequence[dict[str, Any]]) -> VLBatch:
        task = examples[0]["task"]
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
