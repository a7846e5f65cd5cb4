"""Bad input fails loudly and usefully: file, record number, field and offending value in the message;
unknown extra fields are ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.tables import (
    DuplicateMediaIdError,
    TableParseError,
    build_media_index,
    load_answer_vocab,
    parse_coco_karpathy,
    parse_gqa_balanced,
    parse_nlvr2,
    parse_nlvr2_lxmert,
    parse_tvqa_solution,
    parse_video_captions,
    parse_video_qa,
    parse_vqa_lxmert,
    parse_vqa_official,
    read_table,
)


def nlvr2_record(i: int, **overrides) -> dict:
    record = {"identifier": f"dev-{i}-0-0", "sentence": f"Sentence {i}.", "label": "True",
              "left_url": "http://l", "right_url": "http://r", "writer": "1", "synset": "dog", "query": "q"}
    record.update(overrides)
    return record


def tvqa_record(qid: int, **overrides) -> dict:
    record = {"qid": qid, "q": "Why?", **{f"a{k}": f"choice {k}" for k in range(5)}, "answer_idx": 1,
              "ts": "1.5-3.0", "vid_name": "s01e01_seg01_clip_00", "show_name": "The Big Bang Theory"}
    record.update(overrides)
    return record


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


# ---------------------------------------------------------------------------------- file-level
def test_truncated_json_names_the_file(tmp_path):
    question = {"image_id": 1, "question": "Q?", "question_id": 1000}
    text = json.dumps({"data_subtype": "val2014", "questions": [question]})
    path = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(TableParseError) as info:
        parse_vqa_official(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message
    assert info.value.path == path


def test_truncated_gqa_dict_names_the_file(tmp_path):
    path = tmp_path / "val_balanced_questions.json"
    path.write_text('{"1": {"imageId": "1", "question": "Q?", "answer": "a"}, "2": {"imageId"')
    with pytest.raises(TableParseError, match=r"val_balanced_questions\.json: invalid JSON .*truncated"):
        parse_gqa_balanced(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(TableParseError, match=r"nope\.jsonl: file not found"):
        parse_video_qa(tmp_path / "nope.jsonl", dataset="tvqa")


def test_malformed_jsonl_line_7(tmp_path):
    lines = [nlvr2_record(i) for i in range(6)] + ['{"identifier": "dev-6-0-0", "sentence": ']
    lines += [nlvr2_record(7)]
    path = write_jsonl(tmp_path / "dev.json", lines)
    with pytest.raises(TableParseError) as info:
        parse_nlvr2(path)
    assert str(info.value).startswith(f"{path}: line 7: invalid JSON")
    assert info.value.record == "line 7"


def test_json_list_given_to_a_jsonl_parser_gets_a_hint(tmp_path):
    path = write_json(tmp_path / "valid.json", [{"identifier": "dev-1-0-0"}, {"identifier": "dev-2-0-0"}])
    path.write_text(json.dumps([{"identifier": "dev-1-0-0"}], indent=1))
    with pytest.raises(TableParseError, match="looks like one JSON list"):
        parse_nlvr2(path)


def test_blank_lines_are_not_records(tmp_path):
    path = write_jsonl(tmp_path / "dev.json", [nlvr2_record(0), "", "   ", nlvr2_record(1)])
    table, report = parse_nlvr2(path)
    assert table.num_rows == report.records_read == 2


# --------------------------------------------------------------------------- missing required fields
def test_nlvr2_missing_sentence(tmp_path):
    record = nlvr2_record(2)
    del record["sentence"]
    path = write_jsonl(tmp_path / "dev.json", [nlvr2_record(0), nlvr2_record(1), record])
    with pytest.raises(TableParseError) as info:
        parse_nlvr2(path)
    assert str(info.value).startswith(f"{path}: line 3: field 'sentence': missing required field")
    assert (info.value.record, info.value.field) == ("line 3", "sentence")


def test_tvqa_missing_q(tmp_path):
    record = tvqa_record(2)
    del record["q"]
    path = write_jsonl(tmp_path / "tvqa_val.jsonl", [tvqa_record(1), record])
    with pytest.raises(TableParseError, match=r"tvqa_val\.jsonl: line 2: field 'q': missing required field"):
        parse_video_qa(path, dataset="tvqa")


def test_tvqa_missing_fifth_choice(tmp_path):
    record = tvqa_record(1)
    del record["a4"]
    path = write_jsonl(tmp_path / "tvqa_val.jsonl", [record])
    with pytest.raises(TableParseError, match=r"line 1: field 'a4': missing required field"):
        parse_video_qa(path, dataset="tvqa")


def test_gqa_missing_image_id_names_the_key(tmp_path):
    path = write_json(tmp_path / "val_balanced_questions.json",
                      {"1": {"imageId": "1", "question": "Q?"}, "0042": {"question": "Q?"}})
    with pytest.raises(TableParseError, match=r"key '0042': field 'imageId': missing required field"):
        parse_gqa_balanced(path)


def test_lxmert_list_missing_field_names_the_index(tmp_path):
    records = [{"img_id": "COCO_val2014_000000000001", "sent": "Q?", "question_id": 1000, "label": {"a": 1}},
               {"img_id": "COCO_val2014_000000000001", "question_id": 1001, "label": {"a": 1}}]
    path = write_json(tmp_path / "minival.json", records)
    with pytest.raises(TableParseError, match=r"minival\.json: index 1: field 'sent': missing required field"):
        parse_vqa_lxmert(path)


def test_vqa_annotation_missing_answers(tmp_path):
    questions = write_json(tmp_path / "q.json", {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "Q?", "question_id": 1000}]})
    annotations = write_json(tmp_path / "a.json", {"data_subtype": "val2014", "annotations": [
        {"question_id": 1000, "image_id": 1, "answer_type": "other", "question_type": "what"}]})
    with pytest.raises(TableParseError, match=r"a\.json: annotations index 0: field 'answers': missing"):
        parse_vqa_official(questions, annotations)


def test_karpathy_sentence_without_raw(tmp_path):
    image = {"filepath": "val2014", "filename": "COCO_val2014_000000000001.jpg", "cocoid": 1, "split": "val",
             "sentences": [{"raw": "ok", "sentid": 1}, {"tokens": [], "sentid": 2}]}
    path = write_json(tmp_path / "dataset_coco.json", {"images": [image]})
    with pytest.raises(TableParseError, match=r"images index 0, sentences\[1\]: field 'raw': missing"):
        parse_coco_karpathy(path)


# ------------------------------------------------------------------------------------ wrong types
def test_nlvr2_label_maybe_names_the_value(tmp_path):
    path = write_jsonl(tmp_path / "dev.json", [nlvr2_record(0), nlvr2_record(1, label="maybe")])
    with pytest.raises(TableParseError) as info:
        parse_nlvr2(path)
    assert "line 2: field 'label'" in str(info.value) and "'maybe'" in str(info.value)
    assert info.value.value == "maybe"


def test_nlvr2_lxmert_label_must_be_0_or_1(tmp_path):
    path = write_json(tmp_path / "valid.json", [{"identifier": "dev-1-0-0", "img0": "dev-1-0-img0",
                                                 "img1": "dev-1-0-img1", "label": "maybe", "sent": "S."}])
    with pytest.raises(TableParseError, match=r"index 0: field 'label': expected an integer \(got 'maybe'\)"):
        parse_nlvr2_lxmert(path)


def test_vqa_lxmert_label_maybe(tmp_path):
    path = write_json(tmp_path / "train.json", [{"img_id": "x", "sent": "Q?", "question_id": 1, "label": "maybe"}])
    with pytest.raises(TableParseError, match=r"field 'label': expected an object \(got 'maybe'\)"):
        parse_vqa_lxmert(path)


def test_answer_idx_out_of_range_and_bool(tmp_path):
    path = write_jsonl(tmp_path / "how2qa_val_release.jsonl", [tvqa_record(1, answer_idx=4)])
    with pytest.raises(TableParseError, match=r"field 'answer_idx': expected an index in 0..3 \(got 4\)"):
        parse_video_qa(path, dataset="how2qa")
    write_jsonl(path, [tvqa_record(1, answer_idx=True)])
    with pytest.raises(TableParseError, match=r"expected an integer \(got True\)"):
        parse_video_qa(path, dataset="how2qa")


def test_vqa_answer_type_must_be_official(tmp_path):
    path = write_json(tmp_path / "train.json", [{"img_id": "x", "sent": "Q?", "question_id": 1,
                                                 "answer_type": "colour"}])
    with pytest.raises(TableParseError, match=r"field 'answer_type': expected one of .*\(got 'colour'\)"):
        parse_vqa_lxmert(path)


def test_tvc_ts_must_be_a_pair(tmp_path):
    path = write_jsonl(tmp_path / "tvc_val_release.jsonl",
                       [{"vid_name": "v", "duration": 5.0, "ts": [1.0], "clip_id": 1}])
    with pytest.raises(TableParseError, match=r"line 1: field 'ts': expected \[start, end\] seconds \(got \[1.0\]\)"):
        parse_video_captions(path, dataset="tvc")


def test_solution_with_non_numeric_qid(tmp_path):
    path = write_json(tmp_path / "tvqa_val_solution.json", {"split": "tvqa_val", "solution": {"Friends": {"12x": 1}}})
    with pytest.raises(TableParseError, match=r"solution\['Friends'\] key '12x': field 'qid'"):
        parse_tvqa_solution(path)


def test_vocab_with_non_integer_index(tmp_path):
    path = write_json(tmp_path / "trainval_ans2label.json", {"": 0, "yes": "1"})
    with pytest.raises(TableParseError, match=r"key 'yes': expected an integer label index \(got '1'\)"):
        load_answer_vocab(path)


# ---------------------------------------------------------------------------------- consistency
def test_vqa_image_id_mismatch_between_question_and_annotation(tmp_path):
    questions = write_json(tmp_path / "q.json", {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "Q?", "question_id": 1000},
        {"image_id": 2, "question": "Q?", "question_id": 2000},
    ]})
    annotations = write_json(tmp_path / "a.json", {"data_subtype": "val2014", "annotations": [
        {"question_id": 1000, "image_id": 1, "answer_type": "other", "answers": [{"answer": "x"}] * 10},
        {"question_id": 2000, "image_id": 3, "answer_type": "other", "answers": [{"answer": "x"}] * 10}]})
    with pytest.raises(TableParseError) as info:
        parse_vqa_official(questions, annotations)
    message = str(info.value)
    assert message.startswith(f"{annotations}: annotations index 1: field 'image_id'")
    assert "question 2000" in message and "(got 3)" in message


def test_vqa_files_of_different_subtypes(tmp_path):
    questions = write_json(tmp_path / "q.json", {"data_subtype": "train2014", "questions": []})
    annotations = write_json(tmp_path / "a.json", {"data_subtype": "val2014", "annotations": []})
    with pytest.raises(TableParseError, match="does not match the questions file's 'train2014'"):
        parse_vqa_official(questions, annotations)


def test_duplicate_ids_are_errors(tmp_path):
    path = write_jsonl(tmp_path / "tvqa_val.jsonl", [tvqa_record(5), tvqa_record(6), tvqa_record(5)])
    with pytest.raises(TableParseError, match=r"line 3: field 'qid': duplicate qid \(first at line 1\)"):
        parse_video_qa(path, dataset="tvqa")


def test_nlvr2_malformed_identifier(tmp_path):
    path = write_jsonl(tmp_path / "dev.json", [nlvr2_record(0, identifier="dev-850-img0")])
    with pytest.raises(TableParseError, match=r"line 1: field 'identifier'.*\(got 'dev-850-img0'\)"):
        parse_nlvr2(path)


def test_not_an_arrow_file(tmp_path):
    path = tmp_path / "x.arrow"
    path.write_bytes(b"not arrow at all")
    with pytest.raises(ValueError, match=r"x\.arrow: not an Arrow IPC file"):
        read_table(path)


# ------------------------------------------------------------------------------ extra fields
def test_unknown_extra_fields_are_ignored(tmp_path):
    plain = write_jsonl(tmp_path / "plain.json", [nlvr2_record(0), nlvr2_record(1, label="False")])
    extra = write_jsonl(tmp_path / "extra.json", [
        nlvr2_record(0, future_field={"nested": [1, 2]}, another=None),
        nlvr2_record(1, label="False", validation={"7": "True"}, extra_validations={}),
    ])
    assert parse_nlvr2(extra)[0].equals(parse_nlvr2(plain)[0])
    qa_plain = write_jsonl(tmp_path / "tvqa_a.jsonl", [tvqa_record(1)])
    qa_extra = write_jsonl(tmp_path / "tvqa_b.jsonl", [tvqa_record(1, a5="sixth choice?", subtitle="x", vid_id=3)])
    assert parse_video_qa(qa_extra, dataset="tvqa", split="x")[0].equals(
        parse_video_qa(qa_plain, dataset="tvqa", split="x")[0])


# -------------------------------------------------------------------------------- media index
def test_duplicate_media_ids_name_both_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "b" / "x.png").write_bytes(b"2")
    with pytest.raises(DuplicateMediaIdError) as info:
        build_media_index(tmp_path, "**/*", "image")
    message = str(info.value)
    assert "'x'" in message and str(tmp_path / "a" / "x.jpg") in message and str(tmp_path / "b" / "x.png") in message


def test_media_index_listed_file_missing_or_outside(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"1")
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg"):
        build_media_index(tmp_path / "root", ["gone.jpg"], "image")
    with pytest.raises(ValueError, match="outside the media root"):
        build_media_index(tmp_path / "root", ["../outside.jpg"], "image")
    with pytest.raises(ValueError, match="kind must be"):
        build_media_index(tmp_path / "root", "*", "audio")  # type: ignore[arg-type]
