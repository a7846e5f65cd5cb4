"""Multi-task training data: per-task Datasets over task tables + a single-task-batch sampler (docs/data.md §5).

* ``TaskDataset`` maps a task table and opens the feature snapshot lazily, once per process (DataLoader
  workers included): no file is opened per sample, features come as zero-copy views of the mapped store.
* Items are addressed by ``(task, index, epoch)`` keys so a worker needs no shared state to be deterministic:
  VQA/GQA soft-label answers are re-sampled every epoch with an RNG seeded by (seed, epoch, task, index),
  hence ``num_workers=0`` and ``num_workers=2`` yield identical batches.
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
CAPTION_TASKS = ("coco", "tvc", "yc2c")


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
        self._expand = train and self.task in CAPTION_TASKS
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
        """The example dict ``vlpet.batch.collate`` consumes (target chosen, features attached)."""
        self._open()
        if not 0 <= index < len(self):
            raise IndexError(f"{self.table_path}: index {index} out of range for {len(self)} examples")
        row = self.row_of(index)
        targets = self._value("targets", row)
        ex: dict[str, Any] = {"task": self.task, "example_id": self._value("example_id", row),
                              "text": self._value("text", row) or "", "subs": self._value("subs", row),
                              "ts": self._value("ts", row), "choices": self._value("choices", row),
                              "references": targets}
        raw = self._value("raw_answers", row) if "raw_answers" in self._cols else None
        if raw:
            ex["raw_answers"] = raw
        if self._expand:
            ex["target"] = targets[int(self._caption[index])]
        elif self.fmt.answer_sampling:
            scores = self._value("scores", row)
            if targets and self.train:
                answer, score = sample_answer(targets, scores, _rng(self.seed, epoch, self.task, index))
                ex["target"] = answer
                ex["weight"] = score if self.fmt.answer_sampling == "weighted" else 1.0
            elif self.train and scores is not None:  # labelled but no answer in the vocabulary: upstream VL-T5
                ex["target"], ex["weight"] = "", 0.0  # trains on "" with score 0, i.e. contributes no loss
            elif targets:  # evaluation: the best-scored answer (tables keep answers sorted by -score)
                ex["target"] = targets[0]
        elif targets:
            ex["target"] = targets[0]
        media = self._value("media_ids", row)
        if len(media) == 1:
            ex["vis"] = self._reader.get(media[0])
        else:
            ex["vis"] = self._reader.get_many(media)
        return ex

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
        if not 0 <= index < len(self):
            raise IndexError(f"task {self.task}: index {index} out of range for {len(self)} examples")
        k = int(np.searchsorted(self._starts, index, side="right") - 1)
        part = self.parts[k]
        local = index - int(self._starts[k])
        seed = part.seed
        ex = part.example(local, epoch)
        if part.fmt.answer_sampling and part.train and k:
            # re-sample with the global index so two parts never share an RNG stream
            row = part.row_of(local)
            targets, scores = part._value("targets", row), part._value("scores", row)
            if targets and scores:
                answer, score = sample_answer(targets, scores, _rng(seed, epoch, self.task, index))
                ex["target"] = answer
                ex["weight"] = score if part.fmt.answer_sampling == "weighted" else 1.0
        return ex

    def __getitem__(self, key: int | Key) -> dict[str, Any]:
        if isinstance(key, tuple):
            return self.example(key[1], key[2])
        return self.example(key)


class MultiTaskDataset(torch.utils.data.Dataset):
    """Task name → ``TaskDataset``; indexed by ``(task, index, epoch)`` keys from ``MultiTaskBatchSampler``."""

    def __init__(self, datasets: Mapping[str, TaskDataset]) -> None:
        self.datasets = dict(datasets)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        task, index, epoch = key
        return self.datasets[task].example(index, epoch)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets.values())

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
        for task, idx in self.rank_batches()[self.start:]:
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
                                    mode=mode, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    # A private generator: creating the loader's iterator must not draw from the global torch RNG (dropout's),
    # or a resumed run would see other dropout masks than the uninterrupted one.
    loader_kw.setdefault("generator", torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=MultiTaskCollator(tokenizer),
                                       num_workers=num_workers, **loader_kw)
