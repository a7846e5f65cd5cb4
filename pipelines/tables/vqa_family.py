"""Shared pieces of the VQA-like family (VQA v2, GQA, Karpathy VQA): soft scores and row assembly.

Answer lists are always sorted by (-score, answer) so that two routes to the same data (official
files vs. LXMERT preprocessed files) produce byte-identical tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from pipelines.tables.errors import TableParseError
from pipelines.tables.readers import Record
from pipelines.tables.schemas import VQA_SCHEMA, BatchedColumns
from pipelines.tables.vqa_normalize import normalize_answer

# Number of annotators (out of 10) giving an answer -> soft score; >= 4 gives 1.0. This equals the
# official leave-one-out accuracy min(1, matches/3) averaged over the 10 annotators.
_SCORE_BY_COUNT = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}

Answers = list[dict[str, Any]]


def soft_score(count: int) -> float:
    """Soft score for ``count`` matching annotators: 0.3 / 0.6 / 0.9 / 1.0 (exact decimals, no 3*0.3 drift)."""
    return _SCORE_BY_COUNT.get(count, 1.0)


def sorted_answers(scores: Mapping[str, float]) -> Answers:
    """``{answer: score}`` -> the list<struct> value, sorted by (-score, answer)."""
    return [{"answer": a, "score": float(s)} for a, s in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


# Millions of annotator answers but few distinct strings ("yes", "2", ...): memoise the normaliser.
_normalize_cached = lru_cache(maxsize=1 << 18)(normalize_answer)


def soft_scores(raw_answers: Iterable[str]) -> Answers:
    """Official soft scores: count annotator answers per *normalised* answer, map counts to scores."""
    counts = Counter(_normalize_cached(answer) for answer in raw_answers)
    return sorted_answers({answer: soft_score(n) for answer, n in counts.items()})


def answers_from_label(record: Record, field: str = "label") -> Answers | None:
    """An LXMERT ``label`` dict ``{answer: score}`` (absent on test splits -> None)."""
    label = record.obj(field, required=False)
    if label is None:
        return None
    for answer, score in label.items():
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
            raise record.error(field, f"score of answer {answer!r} must be a number in [0, 1]", score)
    return sorted_answers(label)


class VqaColumns:
    """Accumulates VQA-family rows, refusing duplicate question ids (they would double-count in eval)."""

    def __init__(self, path_for_errors: Any) -> None:
        self.columns = BatchedColumns(VQA_SCHEMA)
        self._seen: dict[str, str] = {}
        self._path = path_for_errors

    def __len__(self) -> int:
        return len(self.columns)

    def add(
        self,
        *,
        ref: str,
        question_id: str,
        image_id: str,
        question: str,
        answers: Answers | None,
        answer_type: str | None = None,
        question_type: str | None = None,
        raw_answers: Sequence[str] | None = None,
        is_topk_optimal: bool | None = None,
    ) -> None:
        first = self._seen.get(question_id)
        if first is not None:
            raise TableParseError(
                self._path, f"duplicate question_id (first seen at {first})", record=ref, field="question_id",
                value=question_id, has_value=True,
            )
        self._seen[question_id] = ref
        self.columns.append({
            "question_id": question_id, "image_id": image_id, "question": question, "answers": answers,
            "answer_type": answer_type, "question_type": question_type,
            "raw_answers": None if raw_answers is None else list(raw_answers), "is_topk_optimal": is_topk_optimal,
        })

    def table(self) -> pa.Table:
        return self.columns.table()
