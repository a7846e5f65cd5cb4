"""Rebuild VL-T5's Karpathy VQA splits from the official VQA v2 train+val tables (docs/data.md §2.2).

The VL-Adapter Drive zip is gone, so the three files are reconstructed: every train2014+val2014 question
goes to the Karpathy split of its image (train + restval -> ``karpathy_train``), soft labels are restricted
to the 3,129-answer vocabulary, and ``is_topk_optimal`` says whether the best achievable in-vocabulary score
equals the best score over all answers (i.e. some top-scoring answer is in the vocabulary). The exact
LXMERT script is unpublished; ``check_karpathy_counts`` compares the result with the published counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipelines.tables.arrow_io import attach_metadata, table_metadata
from pipelines.tables.captions import parse_coco_karpathy
from pipelines.tables.errors import TableParseError, key_ref
from pipelines.tables.hashing import SourceDigest, digest_file
from pipelines.tables.readers import expect_dict, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.vqa_family import VqaColumns

DATASET = "vqa_v2"
SPLIT_OF_KARPATHY = {"train": "karpathy_train", "val": "karpathy_val", "test": "karpathy_test"}
EXPECTED_COUNTS = {"karpathy_train": 605_102, "karpathy_val": 26_729, "karpathy_test": 26_280}
EXPECTED_TOPK_OPTIMAL_TEST = 24_722
EXPECTED_TOTAL = 658_111


def load_answer_vocab(path: Path) -> dict[str, int]:
    """``trainval_ans2label.json`` (answer -> index) with every value checked to be an integer."""
    path = Path(path)
    vocab = expect_dict(path, load_json(path), "the answer vocabulary")
    for answer, index in vocab.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise TableParseError(path, "expected an integer label index", record=key_ref(answer), value=index,
                                  has_value=True)
    return vocab


def _sources_of(table: pa.Table) -> list[SourceDigest]:
    return [SourceDigest(s["path"], s["sha256"], s["size"]) for s in table_metadata(table).get("sources", [])]


def rebuild_karpathy_vqa(
    vqa_tables: Sequence[pa.Table],
    karpathy: pa.Table | Path,
    ans2label: Mapping[str, int] | Path,
) -> tuple[dict[str, pa.Table], ParseReport]:
    """VQA v2 tables (official route, train2014 + val2014) + Karpathy split + vocabulary -> three split tables.

    Questions whose image is not in the Karpathy file are skipped and counted; unlabelled input is an error.
    """
    sources: list[SourceDigest] = []
    if isinstance(karpathy, pa.Table):
        captions = karpathy
        sources += _sources_of(karpathy)
    else:
        captions, _ = parse_coco_karpathy(Path(karpathy))
        sources.append(digest_file(Path(karpathy)))
    if isinstance(ans2label, Mapping):
        vocab = ans2label
    else:
        vocab = load_answer_vocab(Path(ans2label))
        sources.append(digest_file(Path(ans2label)))
    image_split = dict(
        zip(captions.column("image_id").to_pylist(), captions.column("karpathy_split").to_pylist(), strict=True)
    )

    report = ParseReport(DATASET, "karpathy")
    rows = {name: VqaColumns("karpathy rebuild") for name in EXPECTED_COUNTS}
    for table in vqa_tables:
        table_sources = _sources_of(table)
        sources += table_sources
        where = table_sources[0].path if table_sources else "<VQA table>"
        columns = {name: table.column(name).to_pylist() for name in
                   ("question_id", "image_id", "question", "answers", "answer_type", "question_type", "raw_answers")}
        for i, qid in enumerate(columns["question_id"]):
            report.records_read += 1
            split = image_split.get(columns["image_id"][i])
            if split is None:
                report.skip("image not in the Karpathy split")
                continue
            answers = columns["answers"][i]
            if answers is None:
                raise TableParseError(where, "question has no answers: the Karpathy rebuild needs annotated "
                                      "(train2014/val2014) tables", record=f"question_id {qid}", field="answers")
            kept = [a for a in answers if a["answer"] in vocab]
            best = max((a["score"] for a in answers), default=0.0)
            topk = bool(answers) and max((a["score"] for a in kept), default=0.0) == best
            if not kept:
                report.note("questions with no in-vocabulary answer")
            rows[SPLIT_OF_KARPATHY[split]].add(
                ref=f"question_id {qid}", question_id=qid, image_id=columns["image_id"][i],
                question=columns["question"][i], answers=kept, answer_type=columns["answer_type"][i],
                question_type=columns["question_type"][i], raw_answers=columns["raw_answers"][i],
                is_topk_optimal=topk,
            )
    unique_sources = list({s.sha256 + s.path: s for s in sources}.values())
    report.sources = [s.path for s in unique_sources]
    out: dict[str, pa.Table] = {}
    for name, cols in rows.items():
        out[name] = attach_metadata(
            cols.table(), family="vqa", dataset=DATASET, split=name, sources=unique_sources,
            extra={"route": "karpathy_rebuild", "vocab_size": str(len(vocab))},
        )
        report.note(f"questions in {name}", out[name].num_rows)
    report.records_written = sum(t.num_rows for t in out.values())
    return out, report


@dataclass
class KarpathyCountCheck:
    """Observed vs. published Karpathy VQA counts; ``partial`` when the input is a subset (synthetic, tiny)."""

    observed: dict[str, int]
    topk_optimal_test: int
    expected: dict[str, int] = field(default_factory=lambda: dict(EXPECTED_COUNTS))
    expected_topk_optimal_test: int = EXPECTED_TOPK_OPTIMAL_TEST
    expected_total: int = EXPECTED_TOTAL

    @property
    def total(self) -> int:
        return sum(self.observed.values())

    @property
    def partial(self) -> bool:
        return self.total < self.expected_total

    @property
    def ok(self) -> bool:
        return (self.observed == self.expected and self.topk_optimal_test == self.expected_topk_optimal_test
                and self.total == self.expected_total)

    def messages(self) -> list[str]:
        """Human-readable differences (empty when everything matches)."""
        out = []
        if self.partial:
            out.append(f"partial input: {self.total:,} of {self.expected_total:,} questions "
                       "(expected for synthetic or subset data; counts below are not comparable)")
        elif self.total != self.expected_total:
            out.append(f"total {self.total:,} != {self.expected_total:,}")
        for name, want in self.expected.items():
            got = self.observed.get(name, 0)
            if got != want:
                out.append(f"{name}: {got:,} questions, published {want:,}")
        if self.topk_optimal_test != self.expected_topk_optimal_test:
            out.append(f"karpathy_test topk-optimal: {self.topk_optimal_test:,}, "
                       f"published {self.expected_topk_optimal_test:,}")
        return out


def check_karpathy_counts(splits: Mapping[str, pa.Table]) -> KarpathyCountCheck:
    """Compare rebuilt split sizes with docs/data.md §2.2; reports, never raises."""
    observed = {name: splits[name].num_rows if name in splits else 0 for name in EXPECTED_COUNTS}
    topk = 0
    if "karpathy_test" in splits:
        flags = splits["karpathy_test"].column("is_topk_optimal").to_pylist()
        topk = sum(1 for flag in flags if flag)
    return KarpathyCountCheck(observed=observed, topk_optimal_test=topk)
