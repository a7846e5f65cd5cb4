"""Accuracy metrics of GQA, NLVR2 and TVQA/How2QA (docs/data.md §6). All return fractions in [0, 1]."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping

__all__ = [
    "gqa_accuracy",
    "nlvr2_accuracy",
    "nlvr2_consistency",
    "nlvr2_sentence_key",
    "tvqa_accuracy",
    "tvqa_accuracy_per_show",
]


def gqa_accuracy(
    predictions: Mapping[Hashable, str], answers: Mapping[Hashable, str | Mapping[str, float]]
) -> float:
    """GQA test-dev accuracy as VL-T5/VL-Adapter compute it: mean over the predicted questions of
    ``label.get(pred, 0)`` when the answer is a label dict (``{"pipe": 1.0}``), else exact string match
    (no normalisation, case-sensitive, no strip)."""
    if not predictions:
        raise ValueError("no predictions")
    total = 0.0
    for qid, pred in predictions.items():
        gold = answers[qid]
        if isinstance(gold, str):
            total += float(pred == gold)
        else:
            total += float(gold.get(pred, 0))
    return total / len(predictions)


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1"):
            return True
        if v in ("false", "0"):
            return False
    raise ValueError(f"not an NLVR2 label: {value!r} (use True/False, 'True'/'False' or 0/1)")


def _nlvr2_correct(predictions: Mapping[str, object], labels: Mapping[str, object]) -> dict[str, bool]:
    if not labels:
        raise ValueError("no labels")
    missing = [i for i in labels if i not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} NLVR2 examples have no prediction (e.g. {missing[0]!r})")
    return {i: _as_bool(predictions[i]) == _as_bool(label) for i, label in labels.items()}


def nlvr2_accuracy(predictions: Mapping[str, object], labels: Mapping[str, object]) -> float:
    """Share of the labelled examples predicted correctly (labels: bool, 'True'/'False' or 0/1)."""
    correct = _nlvr2_correct(predictions, labels)
    return sum(correct.values()) / len(correct)


def nlvr2_sentence_key(identifier: str) -> str:
    """``split-setId-pairId-sentenceId`` with the pair id blanked: the examples sharing a sentence."""
    parts = identifier.split("-")
    if len(parts) != 4:
        raise ValueError(f"not an NLVR2 identifier (split-set-pair-sentence): {identifier!r}")
    return f"{parts[0]}-{parts[1]}-{parts[3]}"


def nlvr2_consistency(predictions: Mapping[str, object], labels: Mapping[str, object]) -> float:
    """Share of unique sentences (identifier with the pair id blanked) whose examples are all correct."""
    correct = _nlvr2_correct(predictions, labels)
    groups: dict[str, bool] = {}
    for identifier, ok in correct.items():
        key = nlvr2_sentence_key(identifier)
        groups[key] = groups.get(key, True) and ok
    return sum(groups.values()) / len(groups)


def _tvqa_correct(pred: object, answer_idx: int) -> bool:
    if isinstance(pred, str):
        return pred.strip() == f"a{int(answer_idx)}"
    return int(pred) == int(answer_idx)  # type: ignore[call-overload]


def tvqa_accuracy(predictions: Mapping[Hashable, object], answer_idx: Mapping[Hashable, int]) -> float:
    """TVQA/How2QA accuracy over the predicted questions: the generated text (``"a3"``) must equal
    ``f"a{answer_idx}"`` (surrounding whitespace ignored); an integer prediction is compared directly."""
    if not predictions:
        raise ValueError("no predictions")
    return sum(_tvqa_correct(p, answer_idx[q]) for q, p in predictions.items()) / len(predictions)


def tvqa_accuracy_per_show(
    predictions: Mapping[Hashable, object],
    answer_idx: Mapping[Hashable, int],
    shows: Mapping[Hashable, str],
) -> dict[str, float]:
    """Accuracy per show (VL-Adapter's TVQA breakdown)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for q, p in predictions.items():
        hits[shows[q]].append(_tvqa_correct(p, answer_idx[q]))
    return {show: sum(v) / len(v) for show, v in hits.items()}
