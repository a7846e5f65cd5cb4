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
from pipelines.tables.readers import Record, expect_dict, expect_list, load_json
from pipelines.tables.report import ParseReport
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


def _load_annotations(path: Path) -> tuple[dict[int, Record], str | None]:
    document = expect_dict(path, load_json(path), "the annotations file")
    if "annotations" not in document:
        raise TableParseError(path, "missing top-level field 'annotations' (is this a VQA annotations file?)")
    by_qid: dict[int, Record] = {}
    for i, raw in enumerate(expect_list(path, document["annotations"], "'annotations'")):
        rec = Record(raw, path, _list_ref("annotations", i))
        qid = rec.integer("question_id")
        if qid in by_qid:
            raise rec.error("question_id", f"duplicate annotation (first at {by_qid[qid].ref})", qid)
        by_qid[qid] = rec
    subtype = document.get("data_subtype")
    return by_qid, subtype if isinstance(subtype, str) else None


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
    document = expect_dict(questions_path, load_json(questions_path), "the questions file")
    if "questions" not in document:
        raise TableParseError(questions_path, "missing top-level field 'questions' (is this a VQA questions file?)")
    questions = expect_list(questions_path, document["questions"], "'questions'")
    q_subtype = document.get("data_subtype") if isinstance(document.get("data_subtype"), str) else None

    annotations: dict[int, Record] | None = None
    a_subtype = None
    if annotations_path is not None:
        annotations_path = Path(annotations_path)
        annotations, a_subtype = _load_annotations(annotations_path)
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
    split = split or subtype or folder

    sources = [questions_path] + ([annotations_path] if annotations_path is not None else [])
    report = ParseReport(DATASET, split, sources=[str(p) for p in sources])
    rows = VqaColumns(questions_path)
    used: set[int] = set()
    for i, raw in enumerate(questions):
        report.records_read += 1
        rec = Record(raw, questions_path, _list_ref("questions", i))
        qid = rec.integer("question_id")
        image_id = rec.integer("image_id")
        question = rec.text("question")
        if qid // 1000 != image_id:
            report.note("question_id is not image_id*1000+k")
        answers = answer_type = question_type = raw_answers = None
        if annotations is not None:
            ann = annotations.get(qid)
            if ann is None:
                raise rec.error("question_id", f"no annotation for this question in {annotations_path}", qid)
            used.add(qid)
            ann_image = ann.integer("image_id")
            if ann_image != image_id:
                raise ann.error(
                    "image_id", f"does not match image_id {image_id} of question {qid} ({rec.ref})", ann_image
                )
            raw_answers = _raw_answers(ann)
            if len(raw_answers) != 10:
                report.note("annotations without exactly 10 answers")
            answers = soft_scores(raw_answers)
            answer_type = _answer_type(ann)
            question_type = ann.text("question_type", required=False)
        rows.add(
            ref=rec.ref, question_id=str(qid), image_id=coco_image_id(folder, image_id), question=question,
            answers=answers, answer_type=answer_type, question_type=question_type, raw_answers=raw_answers,
        )
    if annotations is not None and len(used) != len(annotations):
        extra = sorted(set(annotations) - used)
        raise annotations[extra[0]].error(
            "question_id", f"{len(extra)} annotation(s) have no question in {questions_path}", extra[0]
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
