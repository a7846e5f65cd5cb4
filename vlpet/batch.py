"""Task formats, input/target text and batch collation for VL-PET training (docs/method.md §4-5, docs/data.md §4.3, §5).

This module is the boundary between data loading (``pipelines.tasks``) and the model: loaders hand over
plain example dicts (text fields + a numpy feature array), ``collate`` turns one *single-task* list of them
into a ``VLBatch`` of tensors. It imports neither ``pipelines`` nor ``features`` so the model library stays
usable with any loader.

Example dict keys (all optional except ``task`` and ``vis``):
``task``, ``example_id``, ``text`` (question / sentence; "" for captions), ``subs`` (subtitle lines, already
stripped and joined by single spaces), ``ts`` (timestamp text, e.g. ``"20.16-25.12"`` or ``"[0.5, 3.0]"``),
``choices`` (video QA), ``target`` (the training target text, already chosen), ``weight`` (loss weight of that
target), ``answers``/``scores`` (soft labels, for sampling when ``target`` is absent), ``references`` (every
reference target, for evaluation), ``vis`` (``(49, F)`` image grid, ``(2, 49, F)`` NLVR2 pair, ``(T, F)`` video).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.utils.data

from vlpet.catalog import CATALOG, TaskSpec, task_spec
from vlpet.visual import resize_videos

IGNORE_INDEX = -100

# A task's format is its catalogue entry (``vlpet.catalog``); the old names stay importable.
TaskFormat = TaskSpec
TASK_FORMATS: Mapping[str, TaskSpec] = CATALOG
task_format = task_spec


def format_choices(choices: Sequence[str]) -> str:
    """``a0: <c0>. a1: <c1>. … `` — each choice stripped of surrounding '.'/' ', then ended by '. '
    (docs/data.md §4.3)."""
    return "".join(f"a{i}: {c.strip('. ')}. " for i, c in enumerate(choices))


def video_sentence(fmt: TaskSpec | str, example: Mapping[str, Any]) -> str:
    """The video text before the prompt: ``[Subs] …`` then, as the task's ``input_fields`` say,
    ``[Q] …``, ``[TS] (…)`` and ``[Choices] …``."""
    fmt = task_spec(fmt) if isinstance(fmt, str) else fmt
    if fmt.visual != "video":
        raise ValueError(f"task {fmt.name!r} is not a video task")
    parts = {"subs": lambda: f"[Subs] {example.get('subs') or ''}",
             "text": lambda: f"[Q] {example['text'].strip()}",
             "ts": lambda: f"[TS] ({example['ts']})",
             "choices": lambda: f"[Choices] {format_choices(example['choices'])}"}
    return " ".join(parts[name]() for name in fmt.input_fields)


def format_input(fmt: TaskSpec, example: Mapping[str, Any]) -> str:
    """The encoder input text: image tasks ``prompt + text`` (the prompt alone for captions); video tasks
    ``sentence + ' ' + prompt`` (appended)."""
    if fmt.prompt_at_end:
        return video_sentence(fmt, example).rstrip() + " " + fmt.prompt
    return fmt.prompt + (example["text"] if "text" in fmt.input_fields else "")


def sample_answer(answers: Sequence[str], scores: Sequence[float], rng: random.Random) -> tuple[str, float]:
    """One answer drawn with probability ∝ score; returns it and its score (the VQA loss weight)."""
    if len(answers) == 0 or len(answers) != len(scores):
        raise ValueError(f"cannot sample an answer from answers={list(answers)!r} scores={list(scores)!r}")
    total = float(sum(scores))
    if total <= 0:
        raise ValueError(f"answer scores must have a positive sum, got {list(scores)!r} for {list(answers)!r}")
    x = rng.random() * total
    acc = 0.0
    for a, s in zip(answers, scores, strict=True):
        acc += float(s)
        if x < acc:
            return a, float(s)
    return answers[-1], float(scores[-1])


def choose_target(fmt: TaskFormat, example: Mapping[str, Any], rng: random.Random) -> tuple[str | None, float]:
    """The example's training target and loss weight: an explicit ``target``, else a soft-label sample."""
    if example.get("target") is not None:
        return example["target"], float(example.get("weight", 1.0))
    answers = example.get("answers")
    if fmt.answer_sampling and answers:
        answer, score = sample_answer(answers, example["scores"], rng)
        return answer, (score if fmt.answer_sampling == "weighted" else 1.0)
    return None, 1.0


class ExampleBatch(Sequence):
    """Examples of one task kept as columns: one object per batch instead of a dict per example.

    Loaders that gather a batch at once (``pipelines.tasks.TaskDataset.batch``) return this; ``collate`` reads
    its columns directly. ``vis`` is one ``(n, ...)`` array for fixed shapes (the rows a loader gathered), or a
    list of per-example arrays (ragged videos). Text columns may be given as Arrow arrays: they are turned
    into Python lists only when read (the features-only path never pays for them). ``targets`` (already
    chosen, ``None`` where an example has none) and ``weights`` (loss weights; ``None`` = all 1) are columns
    too; a loader may pass ``choose`` (a callable returning both) instead, run on first use. Indexing gives
    the old example dict, so code written for lists of dicts keeps working.
    """

    _FIELDS = ("example_id", "text", "subs", "ts", "choices", "references", "raw_answers")

    def __init__(self, task: str, vis: np.ndarray | Sequence[np.ndarray], columns: Mapping[str, Any], *,
                 targets: Sequence[str | None] | None = None, weights: np.ndarray | None = None,
                 choose: Any = None) -> None:
        self.task = task
        self.vis = vis
        self._cols = dict(columns)
        self._targets = None if targets is None else list(targets)
        self._weights = weights
        self._choose = choose
        self._n = len(vis)

    def _chosen(self) -> None:
        if self._choose is not None:
            targets, self._weights = self._choose()
            self._targets, self._choose = list(targets), None

    @property
    def targets(self) -> list[str | None] | None:
        self._chosen()
        return self._targets

    @property
    def weights(self) -> np.ndarray | None:
        self._chosen()
        return self._weights

    def column(self, name: str) -> list[Any]:
        """A column as a Python list (``None`` per example when the loader has no such column)."""
        v = self._cols.get(name)
        if v is None:
            return [None] * self._n
        if not isinstance(v, list):
            v = self._cols[name] = v.to_pylist()  # an Arrow array: converted once, on first use
        return v

    @property
    def text(self) -> list[str]:
        return [t or "" for t in self.column("text")]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, j: int) -> dict[str, Any]:  # type: ignore[override]
        """Example ``j`` as the dict ``collate`` also accepts (compatibility; not the fast path)."""
        if not -self._n <= j < self._n:
            raise IndexError(f"example {j} out of range for a batch of {self._n}")
        ex: dict[str, Any] = {"task": self.task, "vis": self.vis[j]}
        for name in self._FIELDS:
            if name in self._cols:
                ex[name] = self.column(name)[j]
        ex["text"] = ex.get("text") or ""
        if not ex.get("raw_answers"):
            ex.pop("raw_answers", None)
        if self.targets is not None and self.targets[j] is not None:
            ex["target"] = self.targets[j]
            if self.weights is not None:
                ex["weight"] = float(self.weights[j])
        return ex


@dataclass
class VLBatch:
    """One single-task batch. ``labels`` are padded with -100; ``loss_weights`` is None when all are 1."""

    task: str
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    vis_feats: torch.Tensor
    labels: torch.Tensor | None = None
    vis_attention_mask: torch.Tensor | None = None
    loss_weights: torch.Tensor | None = None
    targets: list[str | None] = field(default_factory=list)
    references: list[list[str]] = field(default_factory=list)
    example_ids: list[str] = field(default_factory=list)
    input_texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> VLBatch:
        """A copy with every tensor moved to ``device`` (text lists shared)."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return VLBatch(**moved)

    def __reduce__(self):
        # Crossing processes (DataLoader workers), torch moves every tensor into its own shared-memory segment
        # and passes a file descriptor per tensor, ~0.1-1 ms each: small CPU tensors (ids, masks, weights) go
        # as plain bytes instead, and features in a worker's ring buffer go as (slot, shape, dtype).
        state: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            ring = _ring_ref(v) if isinstance(v, torch.Tensor) else None
            if ring is not None:
                state[k] = ring
            elif isinstance(v, torch.Tensor) and v.device.type == "cpu" and not v.requires_grad \
                    and not v.is_shared() and v.nbytes <= _INLINE_BYTES and v.dtype in _NUMPY_DTYPES:
                state[k] = _Inline(v.numpy())
            else:
                state[k] = v
        return _rebuild_batch, (state,)


_INLINE_BYTES = 1 << 20
_NUMPY_DTYPES = (torch.int64, torch.int32, torch.bool, torch.float32, torch.float16, torch.uint8)


@dataclass(frozen=True)
class _Inline:
    array: np.ndarray


@dataclass(frozen=True)
class _RingRef:
    slot: torch.Tensor  # the whole shared uint8 slot (its storage crosses once; torch caches the mapping)
    shape: tuple[int, ...]
    dtype: torch.dtype


def _rebuild_batch(state: dict[str, Any]) -> VLBatch:
    out = {}
    for k, v in state.items():
        if isinstance(v, _Inline):
            v = torch.from_numpy(v.array)
        elif isinstance(v, _RingRef):
            v = _take_from_ring(v)
        out[k] = v
    return VLBatch(**out)


# --- the worker's ring of shared-memory buffers ----------------------------------------------------------------
# A slot is a shared uint8 tensor: byte 0 is "in use", the data starts at _RING_HEADER. A worker writes a
# batch's features into a free slot and marks it; the receiving process wraps the slot's bytes in a tensor
# without copying (``_take_from_ring``) and clears the mark when the last tensor or array over them is freed,
# so the worker can then reuse the slot. Slots are reused, not re-created, because a fresh shared segment per
# batch pays a page fault per 4 KB on both sides (~200 us per 200 KB sample measured on the 2-core box); and
# not copied out, because that copy (one 400 KB fp32 sample ~15 us) ran in the consumer, the busy process.
# A consumer that keeps batches keeps their slots: the worker then makes new ones, up to _RING_MAX slots and
# _RING_MAX_BYTES, and beyond that sends a fresh shared tensor (torch's own path) instead.
_RING_HEADER = 64
_RING: list[tuple[torch.Tensor, np.ndarray]] = []  # this process's slots (tensor, numpy view of the flag byte)
_RING_MAX = 16
_RING_MAX_BYTES = 512 << 20
_SEEN: dict[int, torch.Tensor] = {}  # receiver: slots kept mapped (torch reuses a live mapping of the same fd)
_SEEN_MAX = 64
_MB = 1 << 20


def _nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()


def ring_tensor(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in a free slot of this process's shared-memory ring (DataLoader workers); a
    fresh shared tensor when every slot is taken and the ring is at its cap."""
    nbytes = _nbytes(shape, dtype)
    free = [(slot, flag) for slot, flag in _RING if flag[0] == 0]
    fit = [sf for sf in free if sf[0].numel() - _RING_HEADER >= nbytes]
    if fit:
        slot, flag = min(fit, key=lambda sf: sf[0].numel())
    else:
        if free:  # free but too small: let them go rather than grow past the cap
            gone = {id(slot) for slot, _ in free}
            _RING[:] = [sf for sf in _RING if id(sf[0]) not in gone]
        size = _RING_HEADER + -(-nbytes // _MB) * _MB  # whole MBs: batches of one task differ a little
        if len(_RING) >= _RING_MAX or sum(s.numel() for s, _ in _RING) + size > _RING_MAX_BYTES:
            return shared_tensor(tuple(shape), dtype)
        slot = shared_tensor((size,), torch.uint8)
        flag = slot.numpy()[:1]
        _RING.append((slot, flag))
    flag[0] = 1
    return slot[_RING_HEADER:_RING_HEADER + nbytes].view(dtype).view(tuple(shape))


def _ring_ref(t: torch.Tensor) -> _RingRef | None:
    if not _RING or t.device.type != "cpu":
        return None
    ptr = t.untyped_storage().data_ptr()
    for slot, _ in _RING:
        if slot.untyped_storage().data_ptr() == ptr and t.data_ptr() == slot.data_ptr() + _RING_HEADER:
            return _RingRef(slot, tuple(t.shape), t.dtype)
    return None


class _SlotLease:
    """The bytes of a received ring slot as an array interface; the slot is handed back to its worker (flag
    cleared) when this object dies, i.e. when the last array or tensor over those bytes is freed."""

    def __init__(self, slot: torch.Tensor, nbytes: int) -> None:
        self.slot = slot
        self.flag = slot.numpy()[:1]
        self.__array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "version": 3,
                                    "data": (slot.data_ptr() + _RING_HEADER, False)}

    def __del__(self) -> None:
        self.flag[0] = 0


_TORCH_TO_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64,
                   torch.int32: np.int32, torch.uint8: np.uint8, torch.bool: np.bool_}


def _take_from_ring(ref: _RingRef) -> torch.Tensor:
    nbytes = _nbytes(ref.shape, ref.dtype)
    key = ref.slot.untyped_storage().data_ptr()
    if key not in _SEEN:
        if len(_SEEN) >= _SEEN_MAX:  # e.g. workers restarted every epoch: let their old slots go
            _SEEN.pop(next(iter(_SEEN)))
        _SEEN[key] = ref.slot
    np_dtype = _TORCH_TO_NUMPY.get(ref.dtype)
    if np_dtype is None:  # no numpy twin (bfloat16): copy out and free the slot at once
        out = ref.slot[_RING_HEADER:_RING_HEADER + nbytes].view(ref.dtype).view(ref.shape).clone()
        ref.slot.numpy()[0] = 0
        return out
    return torch.from_numpy(np.asarray(_SlotLease(ref.slot, nbytes)).view(np_dtype).reshape(ref.shape))


# --- reused batch buffers ---------------------------------------------------------------------------------------
# A fresh 10-40 MB batch array per step costs a page fault per 4 KB (~2 us per 200 KB sample) and its pages'
# zeroing; loaders gather into buffers this process reuses instead. A buffer is reused only when nothing else
# refers to it (its reference count: every numpy view and every torch.from_numpy tensor over it holds one), so
# a batch the consumer still holds is never overwritten.
#
# Which free buffer: the one used most recently. While the consumer holds batch N, batch N+1 goes into the
# buffer of batch N-1, so two buffers take turns and stay in the CPU's last-level cache as far as it holds
# them; a best-fit choice rotated through buffers of every batch size (12, 12, 20 and 20 MB for the loader
# benchmark's four tasks), and the gathers' writes went to memory (bench/loader.py, session 19: ~5 % of a warm
# pass). New buffers are as large as the largest batch so far, so any free buffer fits the next batch of any
# task.
_POOL: list[np.ndarray] = []  # in hand-out order: the last one was handed out most recently
_POOL_PID: list[int] = [0]
POOL_MAX_BYTES = 512 << 20  # per process; beyond it batches get plain new arrays


def _pool_busy(i: int) -> bool:
    """Whether anything besides the pool refers to buffer ``i`` (the pool and getrefcount's argument are 2)."""
    return sys.getrefcount(_POOL[i]) > 2


def batch_buffer(shape: Sequence[int], dtype: Any) -> np.ndarray:
    """An uninitialised array of ``shape``, in a per-process buffer reused once no array or tensor uses it."""
    import os

    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if _POOL_PID[0] != os.getpid():  # a forked child: the parent's buffers are not ours to track
        _POOL.clear()
        _POOL_PID[0] = os.getpid()
    if nbytes == 0:
        return np.empty(shape, dt)
    free = [i for i in range(len(_POOL)) if _POOL[i].nbytes >= nbytes and not _pool_busy(i)]
    if free:
        buf = _POOL.pop(free[-1])  # the free one handed out last
    else:
        size = -(-max([nbytes] + [b.nbytes for b in _POOL]) // _MB) * _MB
        if sum(b.nbytes for b in _POOL) + size > POOL_MAX_BYTES:
            _POOL[:] = [_POOL[i] for i in range(len(_POOL)) if _pool_busy(i)]  # drop the free ones, try again
            size = -(-nbytes // _MB) * _MB
            if sum(b.nbytes for b in _POOL) + size > POOL_MAX_BYTES:
                return np.empty(shape, dt)
        buf = np.empty(size, np.uint8)
    _POOL.append(buf)
    return buf[:nbytes].view(dt).reshape(tuple(shape))


def shared_tensor(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory: inside a DataLoader worker, a batch built there crosses to
    the main process as a file descriptor instead of being copied into shared memory on the way out.

    ``UntypedStorage._new_shared`` is what torch's own ``default_collate`` uses for exactly this."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, tuple(shape))


def _gathered(arrays: Sequence[np.ndarray]) -> torch.Tensor | None:
    """The batch tensor when ``arrays`` are, in order, consecutive rows of one buffer a loader already gathered
    the batch into (``ExampleBatch`` rows handed out as dicts): stacking them again would only copy."""
    first = arrays[0]
    root = first.base
    if not isinstance(root, np.ndarray) or not first.flags.c_contiguous:
        return None
    start, step = first.ctypes.data, first.nbytes
    for i, a in enumerate(arrays):
        if a.base is not root or a.shape != first.shape or a.dtype != first.dtype \
                or a.ctypes.data != start + i * step or not a.flags.c_contiguous:
            return None
    lo, hi = root.ctypes.data, root.ctypes.data + root.nbytes
    if start < lo or start + step * len(arrays) > hi:
        return None
    whole = np.lib.stride_tricks.as_strided(first, (len(arrays), *first.shape), (step, *first.strides),
                                            writeable=first.flags.writeable)
    return torch.from_numpy(whole) if whole.flags.writeable else torch.from_numpy(np.array(whole))


def stack_features(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """``(n, ...)`` features of a batch: the batch array a loader gathered them into, or one stacked copy."""
    arrays = [np.asarray(a) for a in arrays]
    feats = _gathered(arrays)
    return feats if feats is not None else torch.from_numpy(np.stack(arrays))


def in_dataloader_worker() -> bool:
    """Whether this code runs inside a torch DataLoader worker process."""
    return torch.utils.data.get_worker_info() is not None


def _visual(fmt: TaskFormat, examples: Sequence[Mapping[str, Any]] | ExampleBatch,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(examples, ExampleBatch) and isinstance(examples.vis, np.ndarray) and fmt.visual != "video":
        want = 4 if fmt.visual == "image_pair" else 3
        v = examples.vis
        if v.ndim != want or (fmt.visual == "image_pair" and v.shape[1] != 2):
            raise ValueError(f"task {fmt.name}: batch of example ids {examples.column('example_id')[:3]!r} has "
                             f"visual shape {v.shape}, expected {'(n, 2, N, F)' if want == 4 else '(n, N, F)'}")
        return _to_dtype(torch.from_numpy(v), dtype), None
    arrays = [np.asarray(a) for a in examples.vis] if isinstance(examples, ExampleBatch) \
        else [np.asarray(e["vis"]) for e in examples]
    if fmt.visual == "video":
        videos = [torch.from_numpy(np.array(a, dtype=np.float32)) for a in arrays]
        feats, mask = resize_videos(videos, fmt.n_frames)
        return _to_dtype(feats, dtype), mask
    want = 3 if fmt.visual == "image_pair" else 2
    ids = examples.column("example_id") if isinstance(examples, ExampleBatch) \
        else [e.get("example_id") for e in examples]
    for eid, a in zip(ids, arrays, strict=True):
        if a.ndim != want or (fmt.visual == "image_pair" and a.shape[0] != 2):
            raise ValueError(f"task {fmt.name}: example {eid!r} has visual shape {a.shape}, "
                             f"expected {'(2, N, F)' if want == 3 else '(N, F)'}")
    return _to_dtype(stack_features(arrays), dtype), None


def _to_dtype(feats: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``feats`` as ``dtype``; in a DataLoader worker, written into the worker's shared-memory ring (the batch
    then leaves the worker without a new shared segment); otherwise converted into a reused batch buffer."""
    if in_dataloader_worker():
        return ring_tensor(feats.shape, dtype).copy_(feats)
    if feats.dtype == dtype:
        return feats
    np_dtype = _TORCH_TO_NUMPY.get(dtype)
    if np_dtype is None:
        return feats.to(dtype)
    return torch.from_numpy(batch_buffer(tuple(feats.shape), np_dtype)).copy_(feats)


def _batch_inputs(fmt: TaskFormat, examples: ExampleBatch) -> list[str]:
    if not fmt.prompt_at_end:  # image tasks: prompt + text (the prompt alone for captions)
        if "text" in fmt.input_fields:
            return [fmt.prompt + t for t in examples.text]
        return [fmt.prompt] * len(examples)
    cols = {name: examples.column(name) for name in ("subs", "ts", "choices")}
    texts = examples.text
    return [format_input(fmt, {"text": texts[j], **{k: v[j] for k, v in cols.items()}})
            for j in range(len(examples))]


def collate(examples: Sequence[Mapping[str, Any]] | ExampleBatch, tokenizer: Any, task_cfg: TaskFormat | str,
            rng: random.Random | None = None, vis_dtype: torch.dtype = torch.float32) -> VLBatch:
    """Tokenize inputs/targets of one single-task batch (a list of example dicts, or an ``ExampleBatch``) and
    stack their features into a ``VLBatch``.

    Targets are tokenized with the tokenizer's own special tokens (BART ``<s> … </s>``, T5 ``… </s>``) and
    truncated to ``max_target_len``; padding positions of ``labels`` are -100 so the loss ignores them.
    """
    fmt = task_format(task_cfg) if isinstance(task_cfg, str) else task_cfg
    if not len(examples):
        raise ValueError(f"task {fmt.name}: cannot collate an empty batch")
    columnar = isinstance(examples, ExampleBatch)
    tasks = {examples.task} if columnar else {e.get("task", fmt.name) for e in examples}
    if tasks != {fmt.name}:
        raise ValueError(f"batch for task {fmt.name!r} holds examples of tasks {sorted(tasks)}; "
                         "batches are single-task")
    rng = rng or random.Random()
    inputs = _batch_inputs(fmt, examples) if columnar else [format_input(fmt, e) for e in examples]
    cap: dict[str, Any] = {"max_length": fmt.max_input_len, "truncation": True} if fmt.max_input_len else {}
    enc = tokenizer(inputs, padding="longest", return_tensors="pt", **cap)
    if columnar and examples.targets is not None:
        targets = examples.targets
        weights = examples.weights
        weights = [1.0] * len(targets) if weights is None else weights.tolist()
    else:
        rows = examples if not columnar else [examples[j] for j in range(len(examples))]
        chosen = [choose_target(fmt, e, rng) for e in rows]
        targets, weights = [t for t, _ in chosen], [w for _, w in chosen]
    ids = examples.column("example_id") if columnar else [e.get("example_id") for e in examples]
    labels = None
    loss_weights = None
    if any(t is not None for t in targets):
        missing = [i for i, t in zip(ids, targets, strict=True) if t is None]
        if missing:
            raise ValueError(f"task {fmt.name}: examples {missing[:5]} have no target while others do")
        kw: dict[str, Any] = {"max_length": fmt.max_target_len, "truncation": True} if fmt.max_target_len else {}
        lab = tokenizer(targets, padding="longest", return_tensors="pt", **kw)
        labels = lab["input_ids"].masked_fill(lab["attention_mask"] == 0, IGNORE_INDEX)
        if fmt.answer_sampling == "weighted" or any(w != 1.0 for w in weights):
            loss_weights = torch.tensor(weights, dtype=torch.float32)
    vis, vis_mask = _visual(fmt, examples, vis_dtype)
    refs = examples.column("references") if columnar else [e.get("references") for e in examples]
    return VLBatch(
        task=fmt.name,
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        vis_feats=vis,
        labels=labels,
        vis_attention_mask=vis_mask,
        loss_weights=loss_weights,
        targets=list(targets),
        references=[list(r or ([] if t is None else [t])) for r, t in zip(refs, targets, strict=True)],
        example_ids=["" if i is None else str(i) for i in ids],
        input_texts=inputs,
    )


def task_batch_sizes(base: int, tasks: Sequence[str]) -> dict[str, int]:
    """Per-task batch sizes from one base B (docs/data.md §5): each task's ``batch_share`` 60ths of B, at least
    1 (VQA and video tasks B, GQA ⌊B·100/60⌋, NLVR2 ⌊B·20/60⌋, captions ⌊B·50/60⌋)."""
    if base < 1:
        raise ValueError(f"base batch size must be >= 1, got {base}")
    # integer maths: B*20/60 must not become 99.999
    return {t: max(1, base * task_spec(t).batch_share // 60) for t in tasks}
