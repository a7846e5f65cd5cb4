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
# batch's features into a free slot and marks it; the receiving process copies them out while unpickling
# and clears the mark, so the worker can reuse the slot: nothing the consumer holds ever points into it.
# Slots are reused, not re-created, because a fresh shared segment per batch pays a page fault per 4 KB on
# both sides (~200 us per 200 KB sample measured on the 2-core box); the copy out is one memcpy.
_RING_HEADER = 64
_RING: list[tuple[torch.Tensor, np.ndarray]] = []  # this process's slots (tensor, numpy view of the flag byte)
_RING_MAX = 16
_SEEN: dict[int, torch.Tensor] = {}  # receiver: slots kept mapped (torch reuses a live mapping of the same fd)
_SEEN_MAX = 64


def ring_tensor(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in a free slot of this process's shared-memory ring (DataLoader workers)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
    for slot, flag in _RING:
        if flag[0] == 0 and slot.numel() - _RING_HEADER >= nbytes:
            break
    else:
        if len(_RING) >= _RING_MAX:  # the receiver never frees them (not a DataLoader?): stop tracking them
            _RING.clear()
        slot = shared_tensor((_RING_HEADER + nbytes,), torch.uint8)
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


def _take_from_ring(ref: _RingRef) -> torch.Tensor:
    nbytes = int(np.prod(ref.shape, dtype=np.int64)) * torch.empty(0, dtype=ref.dtype).element_size()
    out = ref.slot[_RING_HEADER:_RING_HEADER + nbytes].view(ref.dtype).view(ref.shape).clone()
    ref.slot.numpy()[0] = 0  # free for the worker again
    key = ref.slot.untyped_storage().data_ptr()
    if key not in _SEEN:
        if len(_SEEN) >= _SEEN_MAX:  # e.g. workers restarted every epoch: let their old slots go
            _SEEN.pop(next(iter(_SEEN)))
        _SEEN[key] = ref.slot
    return out


def shared_tensor(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor in shared memory: inside a DataLoader worker, a batch built there crosses to
    the main process as a file descriptor instead of being copied into shared memory on the way out.

    ``UntypedStorage._new_shared`` is what torch's own ``default_collate`` uses for exactly this."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * torch.empty(0, dtype=dtype).element_size()
    return torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, tuple(shape))


def _gathered(arrays: Sequence[np.ndarray]) -> torch.Tensor | None:
    """The batch tensor when ``arrays`` are, in order, the rows of one array a loader already gathered the
    batch into (``pipelines.tasks.TaskDataset.examples``): stacking them again would only copy."""
    root = arrays[0].base
    if not isinstance(root, np.ndarray) or root.shape != (len(arrays), *arrays[0].shape) \
            or not root.flags.c_contiguous:
        return None
    start, step = root.ctypes.data, root.strides[0]
    for i, a in enumerate(arrays):
        if a.base is not root or a.ctypes.data != start + i * step:
            return None
    owner = root.base  # a shared-memory tensor's .numpy() keeps that tensor as its base: hand it on as is
    if isinstance(owner, torch.Tensor) and owner.data_ptr() == start and tuple(owner.shape) == root.shape:
        return owner
    return torch.from_numpy(root)


def stack_features(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """``(n, ...)`` features of a batch: the batch array a loader gathered them into, or one stacked copy."""
    arrays = [np.asarray(a) for a in arrays]
    feats = _gathered(arrays)
    return feats if feats is not None else torch.from_numpy(np.stack(arrays))


def _in_worker() -> bool:
    return torch.utils.data.get_worker_info() is not None


def _visual(fmt: TaskFormat, examples: Sequence[Mapping[str, Any]],
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    arrays = [np.asarray(e["vis"]) for e in examples]
    if fmt.visual == "video":
        videos = [torch.from_numpy(np.array(a, dtype=np.float32)) for a in arrays]
        feats, mask = resize_videos(videos, fmt.n_frames)
        return _to_dtype(feats, dtype), mask
    want = 3 if fmt.visual == "image_pair" else 2
    for e, a in zip(examples, arrays, strict=True):
        if a.ndim != want or (fmt.visual == "image_pair" and a.shape[0] != 2):
            raise ValueError(f"task {fmt.name}: example {e.get('example_id')!r} has visual shape {a.shape}, "
                             f"expected {'(2, N, F)' if want == 3 else '(N, F)'}")
    return _to_dtype(stack_features(arrays), dtype), None


def _to_dtype(feats: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``feats`` as ``dtype``; in a DataLoader worker, written into the worker's shared-memory ring (the batch
    then leaves the worker without a new shared segment)."""
    if _in_worker():
        return ring_tensor(feats.shape, dtype).copy_(feats)
    return feats if feats.dtype == dtype else feats.to(dtype)


def collate(examples: Sequence[Mapping[str, Any]], tokenizer: Any, task_cfg: TaskFormat | str,
            rng: random.Random | None = None, vis_dtype: torch.dtype = torch.float32) -> VLBatch:
    """Tokenize inputs/targets of one single-task list of examples and stack their features into a ``VLBatch``.

    Targets are tokenized with the tokenizer's own special tokens (BART ``<s> … </s>``, T5 ``… </s>``) and
    truncated to ``max_target_len``; padding positions of ``labels`` are -100 so the loss ignores them.
    """
    fmt = task_format(task_cfg) if isinstance(task_cfg, str) else task_cfg
    if not examples:
        raise ValueError(f"task {fmt.name}: cannot collate an empty batch")
    tasks = {e.get("task", fmt.name) for e in examples}
    if tasks != {fmt.name}:
        raise ValueError(f"batch for task {fmt.name!r} holds examples of tasks {sorted(tasks)}; "
                         "batches are single-task")
    rng = rng or random.Random()
    inputs = [format_input(fmt, e) for e in examples]
    cap: dict[str, Any] = {"max_length": fmt.max_input_len, "truncation": True} if fmt.max_input_len else {}
    enc = tokenizer(inputs, padding="longest", return_tensors="pt", **cap)
    chosen = [choose_target(fmt, e, rng) for e in examples]
    targets = [t for t, _ in chosen]
    labels = None
    loss_weights = None
    if any(t is not None for t in targets):
        missing = [e.get("example_id") for e, t in zip(examples, targets, strict=True) if t is None]
        if missing:
            raise ValueError(f"task {fmt.name}: examples {missing[:5]} have no target while others do")
        kw: dict[str, Any] = {"max_length": fmt.max_target_len, "truncation": True} if fmt.max_target_len else {}
        lab = tokenizer(targets, padding="longest", return_tensors="pt", **kw)
        labels = lab["input_ids"].masked_fill(lab["attention_mask"] == 0, IGNORE_INDEX)
        weights = [w for _, w in chosen]
        if fmt.answer_sampling == "weighted" or any(w != 1.0 for w in weights):
            loss_weights = torch.tensor(weights, dtype=torch.float32)
    vis, vis_mask = _visual(fmt, examples, vis_dtype)
    return VLBatch(
        task=fmt.name,
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        vis_feats=vis,
        labels=labels,
        vis_attention_mask=vis_mask,
        loss_weights=loss_weights,
        targets=targets,
        references=[list(e.get("references") or ([] if t is None else [t]))
                    for e, t in zip(examples, targets, strict=True)],
        example_ids=[str(e.get("example_id", "")) for e in examples],
        input_texts=inputs,
    )


def task_batch_sizes(base: int, tasks: Sequence[str]) -> dict[str, int]:
    """Per-task batch sizes from one base B (docs/data.md §5): each task's ``batch_share`` 60ths of B, at least
    1 (VQA and video tasks B, GQA ⌊B·100/60⌋, NLVR2 ⌊B·20/60⌋, captions ⌊B·50/60⌋)."""
    if base < 1:
        raise ValueError(f"base batch size must be >= 1, got {base}")
    # integer maths: B*20/60 must not become 99.999
    return {t: max(1, base * task_spec(t).batch_share // 60) for t in tasks}
