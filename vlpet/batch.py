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
from typing import Any, Literal

import numpy as np
import torch

from vlpet.visual import resize_videos

VisualKind = Literal["image", "image_pair", "video"]
IGNORE_INDEX = -100


@dataclass(frozen=True)
class TaskFormat:
    """How one task's examples become text: prompt and where it goes, max lengths, visual layout, targets.

    ``max_input_len``/``max_target_len`` None means "not truncated" (NLVR2 input, GQA and NLVR2 targets, as
    upstream). ``answer_sampling`` is
    ``"weighted"`` (VQA: sample ∝ score, loss × score), ``"sampled"`` (GQA: sample ∝ score, unweighted) or None.
    """

    name: str
    prompt: str
    prompt_at_end: bool
    max_input_len: int | None
    max_target_len: int | None
    visual: VisualKind
    answer_sampling: Literal["weighted", "sampled"] | None = None
    n_frames: int = 64


# Exactly the official prompts (docs/method.md §4), including GQA's "gpa: " typo inherited from VL-T5/VL-Adapter.
TASK_FORMATS: dict[str, TaskFormat] = {
    "vqa": TaskFormat("vqa", "vqa: ", False, 20, 10, "image", "weighted"),
    "gqa": TaskFormat("gqa", "gpa: ", False, 20, None, "image", "sampled"),
    # NLVR2: upstream encodes prompt + statement with no max_length (nlvr_clip_data.py), so no cap here either.
    "nlvr2": TaskFormat("nlvr2", "nlvr: ", False, None, None, "image_pair"),
    "coco": TaskFormat("coco", "caption: ", False, 40, 40, "image"),
    "tvqa": TaskFormat("tvqa", "tvqa: ", True, 600, 20, "video"),
    "how2qa": TaskFormat("how2qa", "how2qa: ", True, 600, 20, "video"),
    "tvc": TaskFormat("tvc", "tvc: ", True, 600, 20, "video"),
    "yc2c": TaskFormat("yc2c", "yc2c: ", True, 600, 20, "video"),
}


def task_format(task: str) -> TaskFormat:
    try:
        return TASK_FORMATS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASK_FORMATS)}") from None


def format_choices(choices: Sequence[str]) -> str:
    """``a0: <c0>. a1: <c1>. … `` — each choice stripped of surrounding '.'/' ', then ended by '. '
    (docs/data.md §4.3)."""
    return "".join(f"a{i}: {c.strip('. ')}. " for i, c in enumerate(choices))


def video_sentence(task: str, example: Mapping[str, Any]) -> str:
    """The video text before the prompt: ``[Subs] …`` (+ ``[Q] … [TS] (…) [Choices] …`` / ``[TS] (…)``)."""
    subs = example.get("subs") or ""
    if task in ("tvqa", "how2qa"):
        return (f"[Subs] {subs} [Q] {example['text'].strip()} [TS] ({example['ts']}) "
                f"[Choices] {format_choices(example['choices'])}")
    if task == "tvc":
        return f"[Subs] {subs} [TS] ({example['ts']})"
    if task == "yc2c":
        return f"[Subs] {subs}"
    raise ValueError(f"task {task!r} is not a video task")


def format_input(fmt: TaskFormat, example: Mapping[str, Any]) -> str:
    """The encoder input text: image tasks ``prompt + text``; video tasks ``sentence + ' ' + prompt`` (appended)."""
    if fmt.prompt_at_end:
        return video_sentence(fmt.name, example).rstrip() + " " + fmt.prompt
    if fmt.visual == "image" and fmt.name == "coco":
        return fmt.prompt  # caption input is the prompt alone
    return fmt.prompt + example["text"]


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


def _visual(fmt: TaskFormat, examples: Sequence[Mapping[str, Any]],
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    arrays = [np.asarray(e["vis"]) for e in examples]
    if fmt.visual == "video":
        videos = [torch.from_numpy(np.array(a, dtype=np.float32)) for a in arrays]
        feats, mask = resize_videos(videos, fmt.n_frames)
        return feats.to(dtype), mask
    want = 3 if fmt.visual == "image_pair" else 2
    for e, a in zip(examples, arrays, strict=True):
        if a.ndim != want or (fmt.visual == "image_pair" and a.shape[0] != 2):
            raise ValueError(f"task {fmt.name}: example {e.get('example_id')!r} has visual shape {a.shape}, "
                             f"expected {'(2, N, F)' if want == 3 else '(N, F)'}")
    stacked = np.stack(arrays)  # one copy out of the mapped store
    return torch.from_numpy(stacked).to(dtype), None


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
    """Per-task batch sizes from one base B (docs/data.md §5): VQA B, GQA ⌊B·100/60⌋, NLVR2 ⌊B·20/60⌋,
    captions ⌊B·50/60⌋, video tasks B; at least 1."""
    if base < 1:
        raise ValueError(f"base batch size must be >= 1, got {base}")
    numerator = {"gqa": 100, "nlvr2": 20, "coco": 50}  # integer maths: B*20/60 must not become 99.999
    out = {}
    for t in tasks:
        task_format(t)
        out[t] = max(1, base * numerator[t] // 60) if t in numerator else base
    return out
