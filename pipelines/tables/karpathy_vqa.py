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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.tables.arrow_io import attach_metadata, table_metadata
from pipelines.tables.captions import parse_coco_karpathy
from pipelines.tables.errors import TableParseError, key_ref
from pipelines.tables.hashing import SourceDigest, digest_file
from pipelines.tables.readers import expect_dict, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import VQA_SCHEMA

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
    captions, vocab, sources = _karpathy_inputs(karpathy, ans2label)
    report = ParseReport(DATASET, "karpathy")
    vocab_array = pa.array(list(vocab), pa.string())
    parts: dict[str, list[pa.Table]] = {name: [] for name in EXPECTED_COUNTS}
    for table in vqa_tables:
        table_sources = _sources_of(table)
        sources += table_sources
        kept = _labelled_in_karpathy(table, captions, vocab_array, report,
                                     table_sources[0].path if table_sources else "<VQA table>")
        for karpathy_name, name in SPLIT_OF_KARPATHY.items():
            part = kept.filter(pc.equal(kept.column("karpathy_split"), karpathy_name)).drop_columns("karpathy_split")
            parts[name].append(part.cast(VQA_SCHEMA))
    unique_sources = list({s.sha256 + s.path: s for s in sources}.values())
    report.sources = [s.path for s in unique_sources]
    out: dict[str, pa.Table] = {}
    for name, tables in parts.items():
        split_table = pa.concat_tables(tables) if tables else VQA_SCHEMA.empty_table()
        _check_unique(split_table)
        out[name] = attach_metadata(
            split_table, family="vqa", dataset=DATASET, split=name, sources=unique_sources,
            extra={"route": "karpathy_rebuild", "vocab_size": str(len(vocab))},
        )
        report.note(f"questions in {name}", out[name].num_rows)
    report.records_written = sum(t.num_rows for t in out.values())
    return out, report


def _karpathy_inputs(karpathy: pa.Table | Path, ans2label: Mapping[str, int] | Path
                     ) -> tuple[pa.Table, Mapping[str, int], list[SourceDigest]]:
    """The Karpathy split table and the answer vocabulary (parsed when given as files) and their sources."""
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
    return captions, vocab, sources


def _labelled_in_karpathy(table: pa.Table, captions: pa.Table, vocab_array: pa.Array, report: ParseReport,
                          where: str) -> pa.Table:
    """One VQA table's questions whose image is in the Karpathy split, with that split as a column and the
    answers restricted to the vocabulary (columnar, Arrow compute: the row-by-row version held every question
    as Python dicts, ~GBs)."""
    report.records_read += table.num_rows
    position = pc.index_in(table.column("image_id"), value_set=captions.column("image_id"))
    split = pc.take(captions.column("karpathy_split"), position)
    unmatched = split.null_count
    if unmatched:
        report.skip("image not in the Karpathy split", unmatched)
    kept = table.filter(pc.is_valid(split)).append_column("karpathy_split", pc.drop_null(split))
    if kept.column("answers").null_count:
        qid = kept.filter(pc.is_null(kept.column("answers"))).column("question_id")[0].as_py()
        raise TableParseError(where, "question has no answers: the Karpathy rebuild needs annotated "
                              "(train2014/val2014) tables", record=f"question_id {qid}", field="answers")
    answers, topk, no_vocab = _in_vocabulary(kept.column("answers").combine_chunks(), vocab_array)
    if no_vocab:
        report.note("questions with no in-vocabulary answer", no_vocab)
    kept = kept.set_column(kept.schema.get_field_index("answers"), VQA_SCHEMA.field("answers"), answers)
    return kept.set_column(kept.schema.get_field_index("is_topk_optimal"), VQA_SCHEMA.field("is_topk_optimal"), topk)


def _in_vocabulary(answers: pa.ListArray, vocab: pa.Array) -> tuple[pa.ListArray, pa.BooleanArray, int]:
    """Answer lists restricted to the vocabulary (order kept), ``is_topk_optimal`` per row, rows left with none.

    Lists are sorted by (-score, answer), so a list's best score is its first element's: a row is topk-optimal
    when it has answers and its first in-vocabulary score (0.0 when none) equals its first score.
    """
    flat = answers.flatten()
    offsets = answers.offsets.to_numpy()
    scores = flat.field("score").to_numpy(zero_copy_only=False)
    in_vocab = pc.is_in(flat.field("answer"), value_set=vocab).to_numpy(zero_copy_only=False)
    parent = np.repeat(np.arange(len(answers)), np.diff(offsets))
    kept_per_row = np.bincount(parent[in_vocab], minlength=len(answers))
    new_offsets = np.concatenate([[0], np.cumsum(kept_per_row)]).astype(np.int32)
    kept = pa.ListArray.from_arrays(pa.array(new_offsets), flat.filter(pa.array(in_vocab)))
    has_answers = np.diff(offsets) > 0
    best = np.where(has_answers, scores[np.minimum(offsets[:-1], max(len(scores) - 1, 0))] if len(scores) else 0, 0)
    kept_scores = scores[in_vocab]
    best_kept = np.where(kept_per_row > 0, kept_scores[np.minimum(new_offsets[:-1], max(len(kept_scores) - 1, 0))]
                         if len(kept_scores) else 0, 0.0)
    topk = has_answers & (best_kept == best)
    return kept, pa.array(topk), int((kept_per_row == 0).sum())


def _check_unique(table: pa.Table) -> None:
    """A question id twice in one split would double-count in evaluation (train2014 and val2014 overlap?)."""
    ids = table.column("question_id")
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
    raise TableParseError("karpathy rebuild", "duplicate question_id (first seen at question_id " + dup + ")",
                          record=f"question_id {dup}", field="question_id", value=dup, has_value=True)


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
