"""The streamed parsers and the columnar task build: the same results as the whole-file / row-wise versions
promised, at any batch size and field order (hand-computed expectations)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

import pipelines.tables.schemas as schemas
import pipelines.tasks.build as build
from pipelines.tables import TableParseError, parse_gqa_balanced, parse_vqa_official, write_vl_t5_vqa_json
from pipelines.tables.karpathy_vqa import _in_vocabulary
from pipelines.tables.readers import json_top_level
from pipelines.tables.schemas import ANSWER, BatchedColumns


def _question(image_id: int, k: int, text: str) -> dict:
    return {"image_id": image_id, "question": text, "question_id": image_id * 1000 + k}


def _annotation(image_id: int, k: int, answers: list[str]) -> dict:
    return {"question_id": image_id * 1000 + k, "image_id": image_id, "answer_type": "other",
            "question_type": "what", "answers": [{"answer": a, "answer_id": j + 1} for j, a in enumerate(answers)]}


def test_top_level_scalar_after_the_records_is_found(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"info": {"a": [1, {"b": 2}]}, "questions": [{"x": 1}, {"x": 2}], "data_subtype": "val2014"}')
    assert json_top_level(path, "the file", ("questions", "data_subtype")) == {
        "info": "dict", "questions": "list", "data_subtype": "val2014"}


def test_top_level_must_be_an_object(tmp_path):
    path = tmp_path / "val_balanced_questions.json"
    path.write_text(json.dumps([{"imageId": "1"}]))
    with pytest.raises(TableParseError, match="expected the GQA questions file to be a JSON object, got list"):
        parse_gqa_balanced(path)


def test_vqa_annotations_in_another_order_and_subtype_last(tmp_path, monkeypatch):
    """Annotations are joined by question id, not position; batches of 2 rows change nothing."""
    monkeypatch.setattr("pipelines.tables.vqa.BATCH_ROWS", 2)
    questions = [_question(7, 0, "What colour?"), _question(7, 1, "How many?"), _question(9, 0, "Is it?")]
    annotations = [_annotation(9, 0, ["yes"] * 10), _annotation(7, 1, ["2"] * 3 + ["two"] * 2 + ["3"] * 5),
                   _annotation(7, 0, ["red"] * 2 + ["blue"] * 8)]
    q = tmp_path / "q.json"
    a = tmp_path / "a.json"
    q.write_text(json.dumps({"questions": questions, "data_subtype": "val2014"}))  # subtype after the records
    a.write_text(json.dumps({"annotations": annotations, "data_subtype": "val2014"}))
    table, report = parse_vqa_official(q, a)
    rows = table.to_pylist()
    assert report.split == "val2014" and report.records_read == 3
    assert [r["question_id"] for r in rows] == ["7000", "7001", "9000"]
    assert rows[0]["image_id"] == "COCO_val2014_000000000007"
    assert [(x["answer"], round(x["score"], 4)) for x in rows[0]["answers"]] == [("blue", 1.0), ("red", 0.6)]
    # "two" normalises to "2": 5 annotators -> 1.0; "3": 5 -> 1.0; sorted by (-score, answer)
    assert [(x["answer"], round(x["score"], 4)) for x in rows[1]["answers"]] == [("2", 1.0), ("3", 1.0)]
    assert rows[2]["raw_answers"] == ["yes"] * 10


def test_vqa_annotation_without_question_is_named(tmp_path):
    q = tmp_path / "q.json"
    a = tmp_path / "a.json"
    q.write_text(json.dumps({"data_subtype": "val2014", "questions": [_question(7, 0, "Q?")]}))
    a.write_text(json.dumps({"data_subtype": "val2014", "annotations": [
        _annotation(8, 0, ["x"] * 10), _annotation(7, 0, ["y"] * 10)]}))
    with pytest.raises(TableParseError, match=r"annotations index 0: field 'question_id': 1 annotation\(s\) have no"):
        parse_vqa_official(q, a)


def test_batched_columns_keep_every_row_in_order():
    cols = BatchedColumns(pa.schema([pa.field("a", pa.int64()), pa.field("b", pa.string())]), batch_rows=2)
    for i in range(5):
        cols.append({"a": i, "b": None if i == 3 else str(i)})
    table = cols.table()
    assert len(cols.batches) == 3 and len(cols) == 5
    assert table.to_pydict() == {"a": [0, 1, 2, 3, 4], "b": ["0", "1", "2", None, "4"]}


def test_in_vocabulary_keeps_order_and_flags_topk():
    answers = pa.array([[{"answer": "a", "score": 1.0}, {"answer": "b", "score": 0.3}], [],
                        [{"answer": "x", "score": 1.0}, {"answer": "y", "score": 0.6}],
                        [{"answer": "z", "score": 0.9}]], pa.list_(ANSWER))
    kept, topk, none_left = _in_vocabulary(answers, pa.array(["a", "b", "y"]))
    assert [[d["answer"] for d in row] for row in kept.to_pylist()] == [["a", "b"], [], ["y"], []]
    assert topk.to_pylist() == [True, False, False, False]  # best answer x is out of the vocabulary
    assert none_left == 2


def test_vl_t5_json_is_one_json_list(tmp_path, monkeypatch):
    monkeypatch.setattr("pipelines.tables.vlt5_json._BATCH", 1)
    table = pa.table({"image_id": ["i1", "i2"], "question": ["q1", "q2"], "question_id": ["11", "12"],
                      "question_type": [None, "what"], "answer_type": ["other", None],
                      "answers": pa.array([[{"answer": "a", "score": 0.3}], None], pa.list_(ANSWER)),
                      "is_topk_optimal": [True, None]})
    assert write_vl_t5_vqa_json(table, tmp_path / "x.json", int_question_ids=True) == 2
    assert json.loads((tmp_path / "x.json").read_text()) == [
        {"img_id": "i1", "sent": "q1", "question_id": 11, "answer_type": "other", "label": {"a": 0.3},
         "is_topk_optimal": True},
        {"img_id": "i2", "sent": "q2", "question_id": 12, "question_type": "what"}]


def test_task_batches_match_rows_across_batch_boundaries(tmp_path, monkeypatch):
    """Columnar build over 3-row batches: targets, scores, subs, ts and exclusions as the spec of each task says."""
    monkeypatch.setattr(build, "BATCH_ROWS", 3)
    subs = pa.list_(schemas.SUBTITLE_LINE)
    source = pa.table({
        "clip_id": pa.array([1, 2, 3, 4, 5], pa.int64()), "vid_name": ["v"] * 5,
        "ts": pa.array([[1.5, 2.0], None, [0.25, 3.0], [1.0, 2.0], [4.0, 5.5]], pa.list_(pa.float64())),
        "captions": [["c1"], ["c2a", "c2b"], [], ["c4"], ["c5"]],
        "subtitles": pa.array([[{"text": " Hi : there ", "start": 0.0, "end": 1.0},
                                {"text": "Bye", "start": 1.0, "end": 2.0}], None, [], None, None], subs),
        "media_id": ["m1", "m2", "gone", "m1", "m2"]})
    batches = [build._task_batch("tvc", b) for b in source.filter(
        pa.array([m != "gone" for m in source.column("media_id").to_pylist()])).to_batches(max_chunksize=3)]
    out = pa.Table.from_batches(batches).to_pydict()
    assert out["example_id"] == ["1", "2", "4", "5"]
    assert out["ts"] == ["[1.5, 2.0]", None, "[1.0, 2.0]", "[4.0, 5.5]"]
    assert out["subs"] == ["Hi : there Bye", None, None, None]
    assert out["targets"] == [["c1"], ["c2a", "c2b"], ["c4"], ["c5"]]
    assert out["media_ids"] == [["m1"], ["m2"], ["m1"], ["m2"]]

    vqa = pa.table({"question_id": ["q1", "q2"], "question": ["a?", "b?"], "media_id": ["m1", "m2"],
                    "answers": pa.array([[{"answer": "yes", "score": 1.0}, {"answer": "no", "score": 0.3}], None],
                                        pa.list_(ANSWER)),
                    "raw_answers": pa.array([["yes"] * 10, None], pa.list_(pa.string()))})
    row = build._task_batch("vqa", vqa.to_batches()[0]).to_pydict()
    assert row["targets"] == [["yes", "no"], []] and row["scores"][1] is None
    assert [round(s, 4) for s in row["scores"][0]] == [1.0, 0.3]
    nlvr2 = pa.table({"identifier": ["dev-1-0-0", "dev-1-1-0"], "sentence": ["s", "t"], "label": [True, False],
                      "media_id0": ["a0", "b0"], "media_id1": ["a1", "b1"]})
    pair = build._task_batch("nlvr2", nlvr2.to_batches()[0]).to_pydict()
    assert pair["media_ids"] == [["a0", "a1"], ["b0", "b1"]] and pair["targets"] == [["true"], ["false"]]


def test_stream_writer_needs_a_schema_for_batches(tmp_path):
    with pytest.raises(ValueError, match="need a schema"):
        build.write_stream_atomic(iter([]), Path(tmp_path / "x.arrow"))
