"""GQA (balanced) to the VQA-like table, from the official questions JSON or LXMERT/VL-T5 JSON lists.

Official ``<split>_balanced_questions.json`` is a dict keyed by question id; the single answer gets
score 1.0 (GQA is scored by exact match). ``answer_type`` = ``types.structural`` (verify/query/choose/
logical/compare: the form of the answer), ``question_type`` = ``types.semantic`` (obj/attr/cat/rel/global),
both null when absent. Test/challenge/submission files have no answers -> ``answers`` null.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipelines.tables.arrow_io import attach_metadata
from pipelines.tables.errors import index_ref, key_ref
from pipelines.tables.hashing import digest_file
from pipelines.tables.readers import Record, expect_list, iter_json_object, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.vqa_family import VqaColumns, answers_from_label

DATASET = "gqa"
FAMILY = "vqa"


def _type(rec: Record, key: str) -> str | None:
    types = rec.obj("types", required=False)
    if types is None:
        return None
    value = types.get(key)
    if value is not None and not isinstance(value, str):
        raise rec.error(f"types.{key}", "expected a string", value)
    return value


def parse_gqa_balanced(path: Path, *, split: str | None = None) -> tuple[pa.Table, ParseReport]:
    """Official GQA questions dict -> VQA-like table (``split`` defaults to the name before ``_balanced``).

    The file is streamed (``iter_json_object``): train_balanced holds 943k questions, ~1 GB of JSON.
    """
    path = Path(path)
    split = split or path.stem.split("_balanced")[0].split("_all")[0]
    report = ParseReport(DATASET, split, sources=[str(path)])
    rows = VqaColumns(path)
    for qid, raw in iter_json_object(path, "the GQA questions file"):
        report.records_read += 1
        rec = Record(raw, path, key_ref(qid))
        answer = rec.text("answer", required=False)
        rows.add(
            ref=rec.ref,
            question_id=qid,
            image_id=rec.text("imageId"),
            question=rec.text("question"),
            answers=None if answer is None else [{"answer": answer, "score": 1.0}],
            answer_type=_type(rec, "structural"),
            question_type=_type(rec, "semantic"),
        )
    table = rows.table()
    report.records_written = table.num_rows
    table = attach_metadata(
        table, family=FAMILY, dataset=DATASET, split=split, sources=[digest_file(path)], extra={"route": "official"}
    )
    return table, report


def parse_gqa_lxmert(path: Path, *, split: str | None = None) -> tuple[pa.Table, ParseReport]:
    """LXMERT / VL-T5 GQA list ``{question_id, img_id, sent, label?}`` -> VQA-like table (split = file stem)."""
    path = Path(path)
    records = expect_list(path, load_json(path), "the GQA preprocessed file")
    split = split or path.stem
    report = ParseReport(DATASET, split, sources=[str(path)])
    rows = VqaColumns(path)
    for i, raw in enumerate(records):
        report.records_read += 1
        rec = Record(raw, path, index_ref(i))
        rows.add(
            ref=rec.ref,
            question_id=rec.text("question_id"),
            image_id=rec.text("img_id"),
            question=rec.text("sent"),
            answers=answers_from_label(rec),
        )
    table = rows.table()
    report.records_written = table.num_rows
    table = attach_metadata(
        table, family=FAMILY, dataset=DATASET, split=split, sources=[digest_file(path)], extra={"route": "lxmert"}
    )
    return table, report
