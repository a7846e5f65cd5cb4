"""Task scores from predictions (docs/method.md §6) and the majority-answer baseline they should beat.

Scores are fractions in [0, 1] (accuracies) or on coco-caption's scale (CIDEr ~1.2), never ×100.
Examples without targets (unlabelled test splits) are skipped and counted, so a report can say so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vlpet.catalog import CATALOG, task_spec
from vlpet.evaluation.generation import choice_index
from vlpet.metrics import caption_scores, gqa_accuracy, nlvr2_accuracy, nlvr2_consistency, tvqa_accuracy, vqa_accuracy

__all__ = ["TASK_METRIC", "EvalExample", "majority_baseline", "majority_prediction", "prediction_spread", "score_task"]

# The reported score's name per task, from the catalogue (kept under its old name).
TASK_METRIC: dict[str, str] = {name: spec.metric for name, spec in CATALOG.items()}
SplitRole = Literal["val", "test"]


@dataclass
class EvalExample:
    """What scoring needs of one example.

    ``targets``: VQA/GQA answers by descending soft score (``scores`` aligned with them), NLVR2 ``["true"]`` or
    ``["false"]``, captions every reference, video QA ``["a<idx>"]``; empty for unlabelled examples.
    ``raw_answers``: VQA's 10 annotator answers, for the official metric.
    """

    example_id: str
    targets: list[str]
    scores: list[float] | None = None
    raw_answers: list[str] | None = None


def _label_dict(task: str, ex: EvalExample) -> dict[str, float]:
    """{answer: soft score}; without scores every target counts 1.0."""
    if ex.scores is None:
        return {t: 1.0 for t in ex.targets}
    if len(ex.scores) != len(ex.targets):
        raise ValueError(f"task {task}: example {ex.example_id!r} has {len(ex.targets)} targets but "
                         f"{len(ex.scores)} scores")
    return {t: float(s) for t, s in zip(ex.targets, ex.scores, strict=True)}


def _score_vqa(preds: dict[str, str], labelled: list[EvalExample]) -> dict[str, Any]:
    if all(ex.raw_answers for ex in labelled):
        accs = [vqa_accuracy(preds[ex.example_id], ex.raw_answers or []) for ex in labelled]
        return {"score": sum(accs) / len(accs), "vqa_scoring": "official"}
    # Upstream's per-epoch evaluator: label.get(answer, 0) on the raw prediction, no normalisation.
    total = sum(_label_dict("vqa", ex).get(preds[ex.example_id], 0.0) for ex in labelled)
    return {"score": total / len(labelled), "vqa_scoring": "soft_labels"}


def _nlvr2_label(ex: EvalExample) -> str:
    label = ex.targets[0].strip().lower()
    if label not in ("true", "false"):
        raise ValueError(f"task nlvr2: example {ex.example_id!r} has target {ex.targets[0]!r}, not 'true'/'false'")
    return label


def _score_nlvr2(preds: dict[str, str], labelled: list[EvalExample]) -> dict[str, Any]:
    for eid, pred in preds.items():
        if pred.strip().lower() not in ("true", "false"):
            raise ValueError(f"task nlvr2: prediction {pred!r} for {eid!r} is not 'true'/'false'")
    labels = {ex.example_id: _nlvr2_label(ex) for ex in labelled}
    out: dict[str, Any] = {"score": nlvr2_accuracy(preds, labels)}
    try:
        out["consistency"] = nlvr2_consistency(preds, labels)
    except ValueError as err:  # ids not of the split-set-pair-sentence form
        out["consistency"] = None
        out["consistency_reason"] = str(err)
    return out


def _score_video_qa(task: str, preds: dict[str, str], labelled: list[EvalExample], role: SplitRole
                    ) -> dict[str, Any]:
    """Upstream has two rules. Validation (``TVQAEvaluator.eval``, which also picks the best-average model):
    the prediction must equal ``f"a{answer_idx}"`` exactly. Test (the leaderboard files of
    ``multitask_video.py``): ``int(prediction[1])``, and 0 when that fails."""
    answer_idx: dict[str, int] = {}
    for ex in labelled:
        idx = choice_index(ex.targets[0])
        if idx is None or not ex.targets[0].strip().startswith("a"):
            raise ValueError(f"task {task}: example {ex.example_id!r} has target {ex.targets[0]!r}, "
                             "expected 'a<idx>'")
        answer_idx[ex.example_id] = idx
    parsed = {eid: choice_index(p) for eid, p in preds.items()}
    unparseable = sum(i is None for i in parsed.values())
    if role == "val":
        correct = sum(preds[eid] == f"a{idx}" for eid, idx in answer_idx.items())
        return {"score": correct / len(answer_idx), "unparseable": unparseable, "video_qa_rule": "exact match"}
    as_int = {eid: (0 if i is None else i) for eid, i in parsed.items()}
    return {"score": tvqa_accuracy(as_int, answer_idx), "unparseable": unparseable,
            "video_qa_rule": "int(second char), else 0"}


def _score_captions(preds: dict[str, str], labelled: list[EvalExample]) -> dict[str, Any]:
    refs = {ex.example_id: list(ex.targets) for ex in labelled}
    scores = caption_scores(preds, refs)
    return {"score": scores["CIDEr"], "Bleu_4": scores["Bleu_4"], "ROUGE_L": scores["ROUGE_L"]}


def score_task(task: str, predictions: Mapping[str, str], examples: Sequence[EvalExample], *,
               role: SplitRole = "test") -> dict[str, Any]:
    """``{"task", "metric", "score", "n", "unlabelled", ...extras}`` for one task.

    ``role`` is what the split is used for: upstream scores video QA by exact match on validation and by the
    int of the second character (0 when there is none) on test.

    ``n`` counts the labelled (scored) examples; predictions for ids not in ``examples`` are ignored. Extras:
    VQA ``vqa_scoring`` ("official" when every example has ``raw_answers``, else "soft_labels"); NLVR2
    ``consistency``; captions ``Bleu_4`` and ``ROUGE_L``; video QA ``unparseable`` (no digit as second character)
    and ``video_qa_rule``. When nothing is labelled,
    ``score`` is None and ``reason`` says why.
    """
    spec = task_spec(task)
    seen: set[str] = set()
    for ex in examples:
        if ex.example_id in seen:
            raise ValueError(f"task {task}: duplicate example_id {ex.example_id!r} in examples")
        seen.add(ex.example_id)
    missing = [ex.example_id for ex in examples if ex.example_id not in predictions]
    if missing:
        raise ValueError(f"task {task}: {len(missing)} examples have no prediction, e.g. {missing[:5]}")
    labelled = [ex for ex in examples if ex.targets]
    result: dict[str, Any] = {"task": task, "metric": spec.metric, "score": None, "n": len(labelled),
                              "unlabelled": len(examples) - len(labelled)}
    if not labelled:
        result["reason"] = (f"no labelled examples among {len(examples)}" if examples else "no examples")
        return result
    preds = {ex.example_id: predictions[ex.example_id] for ex in labelled}
    if spec.scorer == "vqa":
        result.update(_score_vqa(preds, labelled))
    elif spec.scorer == "gqa":
        result["score"] = gqa_accuracy(preds, {ex.example_id: _label_dict(task, ex) for ex in labelled})
    elif spec.scorer == "nlvr2":
        result.update(_score_nlvr2(preds, labelled))
    elif spec.scorer == "video_qa":
        result.update(_score_video_qa(task, preds, labelled, role))
    else:
        result.update(_score_captions(preds, labelled))
    result["score"] = float(result["score"])
    return result


def _top_target(task: str, ex: EvalExample) -> str:
    """The highest-scored answer (first on ties); ``targets`` are normally already sorted."""
    if ex.scores is None:
        return ex.targets[0]
    labels = _label_dict(task, ex)
    best = max(labels.values())
    return next(t for t in ex.targets if labels[t] == best)


def majority_prediction(task: str, train_examples: Sequence[EvalExample]) -> str:
    """The most frequent training answer, counted as the task's ``majority`` rule says: ``top_answer`` (VQA/GQA)
    the top target of each example, ``label`` (NLVR2) the label, ``answer`` (video QA) the target, ``caption``
    the most frequent reference after lower-casing/stripping. Ties go to the lexicographically smallest answer,
    so the baseline is deterministic."""
    rule = task_spec(task).majority
    counts: Counter[str] = Counter()
    for ex in train_examples:
        if not ex.targets:
            continue
        if rule == "caption":
            counts.update(t.strip().lower() for t in ex.targets)
        elif rule == "top_answer":
            counts[_top_target(task, ex)] += 1
        elif rule == "label":
            counts[_nlvr2_label(ex)] += 1
        else:
            counts[ex.targets[0].strip()] += 1
    if not counts:
        raise ValueError(f"task {task}: no labelled training examples to take a majority answer from "
                         f"({len(train_examples)} examples)")
    best = max(counts.values())
    return min(a for a, c in counts.items() if c == best)


def majority_baseline(task: str, train_examples: Sequence[EvalExample], eval_examples: Sequence[EvalExample],
                      *, role: SplitRole = "test") -> dict[str, Any]:
    """``score_task`` of predicting the training majority answer for every eval example, plus ``prediction``."""
    prediction = majority_prediction(task, train_examples)
    result = score_task(task, {ex.example_id: prediction for ex in eval_examples}, eval_examples, role=role)
    result["prediction"] = prediction
    return result


def prediction_spread(predictions: Mapping[str, str]) -> dict[str, Any]:
    """How varied the predictions are: a model that answers every example the same way scores exactly like a
    constant baseline, however its score compares with the majority answer's (e.g. "true" on a test split
    whose labels lean the other way from the training split's)."""
    counts = Counter(p.strip() for p in predictions.values())
    if not counts:
        return {"distinct_predictions": 0, "top_prediction": None, "top_prediction_share": 0.0}
    top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return {"distinct_predictions": len(counts), "top_prediction": top,
            "top_prediction_share": n / sum(counts.values())}
