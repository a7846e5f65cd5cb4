"""VQA v2 to the VQA-like table, from the official question/annotation files or LXMERT/VL-T5 JSON lists.

Official route: ``v2_OpenEnded_mscoco_<subtype>_questions.json`` (+ ``v2_mscoco_<subtype>_annotations.json``
when labelled). Soft scores come from the 10 raw annotator answers after the official normalisation
(``vqa_normalize``); the raw answers are kept verbatim in ``raw_answers`` for the official metric.
LXMERT route: lists of ``{img_id, sent, question_id, question_type?, answer_type?, label?, is_topk_optimal?}``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipelines.tables.arrow_io import attach_metadata
from pipelines.tables.errors import TableParseError, index_ref
from pipelines.tables.hashing import digest_file
from pipelines.tables.readers import Record, expect_list, iter_json_items, json_top_level, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import BATCH_ROWS, BatchedColumns
from pipelines.tables.vqa_family import VqaColumns, answers_from_label, soft_scores

DATASET = "vqa_v2"
FAMILY = "vqa"
ANSWER_TYPES = frozenset({"yes/no", "number", "other"})


def coco_image_id(image_subtype: str, image_id: int) -> str:
    """VL-T5 img_id of a COCO image: ``COCO_train2014_000000458752``."""
    return f"COCO_{image_subtype}_{image_id:012d}"


def image_subtype_of(data_subtype: str) -> str:
    """The COCO image folder of a VQA data subtype (test-dev questions use test2015 images)."""
    return data_subtype.replace("test-dev", "test")


def _list_ref(name: str, index: int) -> str:
    return f"{name} {index_ref(index)}"


def _answer_type(rec: Record) -> str | None:
    value = rec.text("answer_type", required=False)
    if value is not None and value not in ANSWER_TYPES:
        raise rec.error("answer_type", f"expected one of {sorted(ANSWER_TYPES)}", value)
    return value


_ANNOTATION_SCHEMA = pa.schema([
    pa.field("image_id", pa.int64(), nullable=False),
    pa.field("raw_answers", pa.list_(pa.string()), nullable=False),
    pa.field("answer_type", pa.string()),
    pa.field("question_type", pa.string()),
])


def _top_level(path: Path, what: str, records: str, hint: str) -> str | None:
    """Check the file's shape (an object with a ``records`` list) without reading it; its ``data_subtype``."""
    top = json_top_level(path, what, (records, "data_subtype"))
    if records not in top:
        raise TableParseError(path, f"missing top-level field {records!r} ({hint})")
    if top[records] != "list":
        raise TableParseError(path, f"expected {records!r} to be a JSON list, got {top[records]}")
    subtype = top.get("data_subtype")
    return subtype if isinstance(subtype, str) else None


class _Annotations:
    """The annotations file streamed into Arrow columns, with question_id -> position (not Python records:
    the 4.4M annotator answers of train2014 as dicts were most of VQA prepare's 3.5 GB)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.position: dict[int, int] = {}
        self.qids: list[int] = []
        columns = BatchedColumns(_ANNOTATION_SCHEMA)
        for i, raw in enumerate(iter_json_items(path, "annotations.item")):
            rec = Record(raw, path, self.ref(i))
            qid = rec.integer("question_id")
            if qid in self.position:
                raise rec.error("question_id", f"duplicate annotation (first at {self.ref(self.position[qid])})", qid)
            self.position[qid] = i
            self.qids.append(qid)
            columns.append({"image_id": rec.integer("image_id"), "raw_answers": _raw_answers(rec),
                            "answer_type": _answer_type(rec),
                            "question_type": rec.text("question_type", required=False)})
        self.table = columns.table()
        self.image_ids = self.table.column("image_id").to_numpy()

    @staticmethod
    def ref(i: int) -> str:
        return _list_ref("annotations", i)

    def error(self, i: int, field: str, message: str, value: object) -> TableParseError:
        return TableParseError(self.path, message, record=self.ref(i), field=field, value=value, has_value=True)


def _raw_answers(rec: Record) -> list[str]:
    answers = rec.array("answers")
    try:  # fast path: the well-formed case, millions of answers on the real files
        out = [item["answer"] for item in answers]
        if all(type(a) is str for a in out):
            return out
    except (TypeError, KeyError):
        pass
    out = []  # slow path, only to name the bad item
    for j, item in enumerate(answers):
        out.append(rec.sub(item, f"answers[{j}]").text("answer"))
    return out


def _official_split(questions_path: Path, annotations_path: Path | None, split: str | None,
                    image_subtype: str | None) -> tuple[str, str]:
    """``(split, COCO image folder)`` from the arguments or the files' ``data_subtype`` (which must agree)."""
    q_subtype = _top_level(questions_path, "the questions file", "questions", "is this a VQA questions file?")
    a_subtype = None
    if annotations_path is not None:
        a_subtype = _top_level(annotations_path, "the annotations file", "annotations",
                               "is this a VQA annotations file?")
        if q_subtype and a_subtype and q_subtype != a_subtype:
            raise TableParseError(
                annotations_path,
                f"data_subtype {a_subtype!r} does not match the questions file's {q_subtype!r} ({questions_path})",
            )
    subtype = q_subtype or a_subtype
    folder = image_subtype or (image_subtype_of(subtype) if subtype else None)
    if folder is None:
        raise TableParseError(
            questions_path, "no 'data_subtype' to name the COCO image folder; pass image_subtype='train2014' etc."
        )
    return split or subtype or folder, folder


def _emit_rows(rows: VqaColumns, pending: list[tuple[str, int, int, str, int]], annotations: _Annotations | None,
               folder: str, report: ParseReport) -> None:
    """Rows of the pending questions; the annotator answers of one batch at a time become Python."""
    if annotations is not None:
        picked = annotations.table.take(pa.array([p[4] for p in pending], pa.int64()))
        raw = picked.column("raw_answers").to_pylist()
        a_types = picked.column("answer_type").to_pylist()
        q_types = picked.column("question_type").to_pylist()
    for k, (ref, qid, image_id, question, _) in enumerate(pending):
        if annotations is None:
            rows.add(ref=ref, question_id=str(qid), image_id=coco_image_id(folder, image_id), question=question,
                     answers=None)
            continue
        if len(raw[k]) != 10:
            report.note("annotations without exactly 10 answers")
        rows.add(ref=ref, question_id=str(qid), image_id=coco_image_id(folder, image_id), question=question,
                 answers=soft_scores(raw[k]), answer_type=a_types[k], question_type=q_types[k],
                 raw_answers=raw[k])
    pending.clear()


def parse_vqa_official(
    questions_path: Path,
    annotations_path: Path | None = None,
    *,
    split: str | None = None,
    image_subtype: str | None = None,
) -> tuple[pa.Table, ParseReport]:
    """Official VQA v2 questions (+ annotations) -> VQA-like table.

    ``split`` defaults to the files' ``data_subtype`` (``train2014``); ``image_subtype`` (the COCO folder
    used in ``image_id``) defaults to the same, with test-dev mapped to test2015. Every question must have
    exactly one annotation whose ``image_id`` matches the question's when annotations are given.
    """
    questions_path = Path(questions_path)
    annotations_path = Path(annotations_path) if annotations_path is not None else None
    split, folder = _official_split(questions_path, annotations_path, split, image_subtype)
    annotations = _Annotations(annotations_path) if annotations_path is not None else None
    sources = [questions_path] + ([annotations_path] if annotations_path is not None else [])
    report = ParseReport(DATASET, split, sources=[str(p) for p in sources])
    rows = VqaColumns(questions_path)
    used = bytearray(len(annotations.qids)) if annotations is not None else bytearray()
    pending: list[tuple[str, int, int, str, int]] = []  # ref, qid, image_id, question, annotation position

    for i, raw_question in enumerate(iter_json_items(questions_path, "questions.item")):
        report.records_read += 1
        rec = Record(raw_question, questions_path, _list_ref("questions", i))
        qid = rec.integer("question_id")
        image_id = rec.integer("image_id")
        question = rec.text("question")
        if qid // 1000 != image_id:
            report.note("question_id is not image_id*1000+k")
        position = -1
        if annotations is not None:
            position = annotations.position.get(qid, -1)
            if position < 0:
                raise rec.error("question_id", f"no annotation for this question in {annotations_path}", qid)
            used[position] = 1
            ann_image = int(annotations.image_ids[position])
            if ann_image != image_id:
                raise annotations.error(
                    position, "image_id", f"does not match image_id {image_id} of question {qid} ({rec.ref})",
                    ann_image,
                )
        pending.append((rec.ref, qid, image_id, question, position))
        if len(pending) >= BATCH_ROWS:
            _emit_rows(rows, pending, annotations, folder, report)
    _emit_rows(rows, pending, annotations, folder, report)
    if annotations is not None and not all(used):
        extra = sorted(qid for qid, flag in zip(annotations.qids, used, strict=True) if not flag)
        raise annotations.error(
            annotations.position[extra[0]], "question_id",
            f"{len(extra)} annotation(s) have no question in {questions_path}", extra[0],
        )
    table = rows.table()
    report.records_written = table.num_rows
    table = attach_metadata(
        table, family=FAMILY, dataset=DATASET, split=split, sources=[digest_file(p) for p in sources],
        extra={"route": "official", "image_subtype": folder},
    )
    return table, report


def _lxmert_raw_answers(rec: Record) -> list[str] | None:
    """Optional raw ``answers`` (VL-T5 ``--raw_label``): a list of strings or of ``{answer: str}`` dicts."""
    answers = rec.array("answers", required=False)
    if answers is None:
        return None
    out = []
    for j, item in enumerate(answers):
        out.append(item if isinstance(item, str) else rec.sub(item, f"answers[{j}]").text("answer"))
    return out


def parse_vqa_lxmert(path: Path, *, split: str | None = None) -> tuple[pa.Table, ParseReport]:
    """LXMERT / VL-T5 preprocessed VQA JSON list -> VQA-like table (``split`` defaults to the file stem)."""
    path = Path(path)
    records = expect_list(path, load_json(path), "the VQA preprocessed file")
    split = split or path.stem
    report = ParseReport(DATASET, split, sources=[str(path)])
    rows = VqaColumns(path)
    for i, raw in enumerate(records):
        report.records_read += 1
        rec = Record(raw, path, index_ref(i))
        topk = rec.data.get("is_topk_optimal")
        if topk is not None and not isinstance(topk, bool):
            raise rec.error("is_topk_optimal", "expected true or false", topk)
        rows.add(
            ref=rec.ref,
            question_id=str(rec.integer("question_id")),
            image_id=rec.text("img_id"),
            question=rec.text("sent"),
            answers=answers_from_label(rec),
            answer_type=_answer_type(rec),
            question_type=rec.text("question_type", required=False),
            raw_answers=_lxmert_raw_answers(rec),
            is_topk_optimal=topk,
        )
    table = rows.table()
    report.records_written = table.num_rows
    table = attach_metadata(
        table, family=FAMILY, dataset=DATASET, split=split, sources=[digest_file(path)], extra={"route": "lxmert"}
    )
    return table, report
