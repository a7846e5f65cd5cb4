"""The task catalogue: one typed entry per task, the single place that says what a task *is*.

Everything that used to switch on a task name (input formatting and batch sizes in ``vlpet.batch``, scoring
and the majority baseline in ``vlpet.evaluation``, generation settings, the presets' task lists and splits in
``vlpet.train.config``, the task-table builder and loader in ``pipelines.tasks``, the demo's splits) reads
these entries. Adding a task means adding one ``TaskSpec`` here, plus its parser (a ``row`` kind in
``pipelines.tasks.build``) and its metric (a ``scorer`` in ``vlpet.evaluation.scoring``) when no existing
kind fits; see ``docs/tasks.md``.

The module imports nothing of the project, so every layer (``vlpet``, ``pipelines``, ``flows``) may read it.
Values are the official code's (docs/method.md §4-6, docs/data.md §4-6: prompts, max lengths, splits,
metrics; docs/fidelity.md for where upstream differs from the paper).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

VisualKind = Literal["image", "image_pair", "video"]
Group = Literal["image", "video"]
RowKind = Literal["vqa", "nlvr2", "caption", "video_qa", "video_caption"]
Scorer = Literal["vqa", "gqa", "nlvr2", "video_qa", "caption"]
Majority = Literal["top_answer", "label", "answer", "caption"]
InputField = Literal["subs", "text", "ts", "choices"]


@dataclass(frozen=True)
class TaskSpec:
    """One task: its data, how its examples become text, how it is answered and scored, where it is trained.

    Text (``vlpet.batch``): ``prompt`` goes before the input text (image tasks) or after the video sentence
    (``prompt_at_end``); ``input_fields`` are the example fields in the encoder input, in the spec's order
    (``[Subs] … [Q] … [TS] (…) [Choices] …`` for video, the question/sentence for image tasks). Lengths are in
    tokens; None means "not truncated" (NLVR2's input, GQA's and NLVR2's targets, as upstream).
    ``answer_sampling``: ``"weighted"`` (sample a soft label ∝ score, loss × score), ``"sampled"`` (sample ∝
    score, unweighted) or None.

    Data (``pipelines.tasks``): unified tables under ``tables/<dataset>/<split>.arrow``; ``row`` is the parser
    that turns their records into task-table columns. ``train_splits``/``val_split``/``test_split`` are
    the paper's splits by their names in the prepared tables.

    Answers: ``answer_vocabulary`` lists a closed answer set (NLVR2's labels, video QA's choice tokens) or is
    None for open answers (``vocabulary_note`` says where those come from). ``generation`` holds the kwargs of
    ``model.generate``; None means the task is answered from logits (NLVR2). ``scorer`` names the metric code,
    ``metric`` the reported score's name, ``majority`` how the majority-answer baseline picks its answer.

    Training: ``group`` is the preset family the task belongs to (image and video tasks are separate runs);
    ``batch_share`` is the task's batch size relative to the base B, in 60ths (docs/data.md §5).
    """

    name: str
    dataset: str
    group: Group
    visual: VisualKind
    prompt: str
    prompt_at_end: bool
    input_fields: tuple[InputField, ...]
    max_input_len: int | None
    max_target_len: int | None
    row: RowKind
    train_splits: tuple[str, ...]
    val_split: str
    test_split: str
    scorer: Scorer
    metric: str
    majority: Majority
    generation: Mapping[str, Any] | None = field(default_factory=dict)
    answer_vocabulary: tuple[str, ...] | None = None
    vocabulary_note: str = ""
    answer_sampling: Literal["weighted", "sampled"] | None = None
    batch_share: int = 60
    n_frames: int = 64

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split the paper uses (train ones, validation, test), in that order, without repeats."""
        return tuple(dict.fromkeys([*self.train_splits, self.val_split, self.test_split]))

    @property
    def is_caption(self) -> bool:
        """Several references per example; training expands them to one example per caption."""
        return self.row in ("caption", "video_caption")

    @property
    def answered_from_logits(self) -> bool:
        return self.generation is None


def _choices(n: int) -> tuple[str, ...]:
    return tuple(f"a{i}" for i in range(n))


_VQA_GEN = MappingProxyType({"num_beams": 1, "max_length": 20})
_VIDEO = dict(group="video", visual="video", prompt_at_end=True, max_input_len=600, max_target_len=20)

# Exactly the official prompts (docs/method.md §4), including GQA's "gpa: " typo inherited from VL-T5/VL-Adapter.
_ENTRIES = (
    TaskSpec("vqa", "vqa", "image", "image", "vqa: ", False, ("text",), 20, 10, "vqa",
             ("karpathy_train",), "karpathy_val", "karpathy_test", "vqa", "vqa_accuracy", "top_answer",
             generation=_VQA_GEN, answer_sampling="weighted",
             vocabulary_note="open generation; training targets are the 3,129-answer trainval_ans2label.json "
                             "soft labels (VL-T5)"),
    TaskSpec("gqa", "gqa", "image", "image", "gpa: ", False, ("text",), 20, None, "vqa",
             ("train", "valid"), "testdev", "testdev", "gqa", "accuracy", "top_answer",
             generation=_VQA_GEN, answer_sampling="sampled", batch_share=100,
             vocabulary_note="open generation; the 1,842-answer GQA vocabulary is loaded, not used for scoring"),
    # NLVR2: upstream encodes prompt + statement with no max_length (nlvr_clip_data.py), so no cap here either.
    TaskSpec("nlvr2", "nlvr2", "image", "image_pair", "nlvr: ", False, ("text",), None, None, "nlvr2",
             ("train",), "dev", "test1", "nlvr2", "accuracy", "label",
             generation=None, answer_vocabulary=("true", "false"), batch_share=20),
    TaskSpec("coco", "coco", "image", "image", "caption: ", False, (), 40, 40, "caption",
             ("train",), "val", "test", "caption", "CIDEr", "caption",
             generation=MappingProxyType({"num_beams": 5, "max_length": 40}), batch_share=50),
    TaskSpec("tvqa", "tvqa", prompt="tvqa: ", input_fields=("subs", "text", "ts", "choices"), row="video_qa",
             train_splits=("train",), val_split="val", test_split="test_public", scorer="video_qa",
             metric="accuracy", majority="answer", answer_vocabulary=_choices(5), **_VIDEO),
    TaskSpec("how2qa", "how2qa", prompt="how2qa: ", input_fields=("subs", "text", "ts", "choices"), row="video_qa",
             train_splits=("train_release",), val_split="val_release", test_split="test_public_release",
             scorer="video_qa", metric="accuracy", majority="answer", answer_vocabulary=_choices(4), **_VIDEO),
    TaskSpec("tvc", "tvc", prompt="tvc: ", input_fields=("subs", "ts"), row="video_caption",
             train_splits=("train_release",), val_split="val_release", test_split="test_release",
             scorer="caption", metric="CIDEr", majority="caption",
             generation=MappingProxyType({"num_beams": 5, "max_length": 20}), **_VIDEO),
    TaskSpec("yc2c", "yc2c", prompt="yc2c: ", input_fields=("subs",), row="video_caption",
             train_splits=("train_release",), val_split="val_release", test_split="test_release",
             scorer="caption", metric="CIDEr", majority="caption",
             generation=MappingProxyType({"num_beams": 5, "max_length": 20}), **_VIDEO),
)

CATALOG: Mapping[str, TaskSpec] = MappingProxyType({spec.name: spec for spec in _ENTRIES})
TASKS: tuple[str, ...] = tuple(CATALOG)


def task_spec(task: str) -> TaskSpec:
    """The catalogue entry of ``task``; a clear error lists the known tasks."""
    try:
        return CATALOG[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known: {sorted(CATALOG)}") from None


def tasks_in(group: Group) -> tuple[str, ...]:
    """The tasks of one preset family (``image`` or ``video``), in catalogue order."""
    return tuple(name for name, spec in CATALOG.items() if spec.group == group)


def tasks_where(**fields: Any) -> tuple[str, ...]:
    """The tasks whose entries have every given field value, e.g. ``tasks_where(scorer="caption")``."""
    return tuple(name for name, spec in CATALOG.items() if all(getattr(spec, k) == v for k, v in fields.items()))
