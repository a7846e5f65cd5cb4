"""Write VQA-like tables back out as VL-T5 / LXMERT JSON lists, so the original VL-T5 / VL-Adapter code
(and anyone comparing with it) can read our rebuilt Karpathy splits unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from pipelines.tables.arrow_io import table_metadata
from vlpet.atomic import write_atomic


def vl_t5_vqa_records(table: pa.Table, *, int_question_ids: bool | None = None) -> list[dict[str, Any]]:
    """Rows as ``{img_id, sent, question_id, question_type, answer_type, label, is_topk_optimal}``.

    VQA question ids go back to ints (VL-T5 keys ``id2datum`` by int); GQA ids stay strings (leading
    zeros matter). ``int_question_ids=None`` decides from the table's dataset metadata. Keys whose value
    is null are left out, as LXMERT's test files omit ``label``. Scores are rounded to 4 decimals
    (float32 0.3 -> 0.3).
    """
    if int_question_ids is None:
        int_question_ids = table_metadata(table).get("dataset") == "vqa_v2"
    return list(_iter_records(table, int_question_ids))


_BATCH = 16_384


def _iter_records(table: pa.Table, int_question_ids: bool) -> Iterator[dict[str, Any]]:
    """The records one batch of rows at a time (a 605k-row split as Python dicts at once took ~1 GB)."""
    columns = ["image_id", "question", "question_id", "question_type", "answer_type", "answers", "is_topk_optimal"]
    for batch in table.select(columns).to_batches(max_chunksize=_BATCH):
        yield from _records(batch.to_pylist(), int_question_ids)


def _records(rows: list[dict[str, Any]], int_question_ids: bool) -> Iterator[dict[str, Any]]:
    for row in rows:
        qid: str | int = row["question_id"]
        if int_question_ids:
            if not (qid.isdigit() and str(int(qid)) == qid):
                raise ValueError(f"question_id {qid!r} is not a canonical integer; pass int_question_ids=False")
            qid = int(qid)
        record: dict[str, Any] = {"img_id": row["image_id"], "sent": row["question"], "question_id": qid}
        for key in ("question_type", "answer_type"):
            if row[key] is not None:
                record[key] = row[key]
        if row["answers"] is not None:
            record["label"] = {a["answer"]: round(float(a["score"]), 4) for a in row["answers"]}
        if row["is_topk_optimal"] is not None:
            record["is_topk_optimal"] = row["is_topk_optimal"]
        yield record


def write_vl_t5_vqa_json(table: pa.Table, path: Path | str, *, int_question_ids: bool | None = None) -> int:
    """Atomically write the VL-T5 JSON list (``vlpet.atomic``: temp file, fsync, rename); returns the count.

    Streamed record by record; the bytes are those of ``json.dumps(list_of_records)``.
    """
    path = Path(path)
    if int_question_ids is None:
        int_question_ids = table_metadata(table).get("dataset") == "vqa_v2"
    count = 0

    def write(handle: IO[bytes]) -> None:
        nonlocal count
        handle.write(b"[")
        for record in _iter_records(table, int_question_ids):
            handle.write((", " if count else "").encode() + json.dumps(record).encode("utf-8"))
            count += 1
        handle.write(b"]")

    write_atomic(path, write)
    return count
