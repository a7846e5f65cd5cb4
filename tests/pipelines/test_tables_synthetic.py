"""Hand-written tiny inputs in the upstream formats, with hand-computed expected tables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.tables import (
    VQA_SCHEMA,
    build_media_index,
    check_karpathy_counts,
    load_subtitles,
    normalize_answer,
    parse_coco_karpathy,
    parse_gqa_balanced,
    parse_gqa_lxmert,
    parse_nlvr2,
    parse_nlvr2_lxmert,
    parse_video_captions,
    parse_video_qa,
    parse_vqa_lxmert,
    parse_vqa_official,
    process_punctuation,
    read_table,
    rebuild_karpathy_vqa,
    soft_scores,
    table_metadata,
    vl_t5_vqa_records,
    write_table,
    write_vl_t5_vqa_json,
)


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def answers(**scores: float) -> list[dict]:
    """Expected answers value, given in the canonical (-score, answer) order."""
    return [{"answer": a.replace("_", " "), "score": pytest.approx(s)} for a, s in scores.items()]


# ------------------------------------------------------------------------------ VQA normaliser
@pytest.mark.parametrize(
    ("raw", "expected", "rule"),
    [
        ("Two.", "2", "period not followed by a digit is removed; number word 'two' -> '2'"),
        ("the dog's", "dog's", "\"'\" is not in PUNCT so the possessive survives; article 'the' dropped"),
        ("a man", "man", "article 'a' dropped"),
        ("An apple", "apple", "lowercased before the article check"),
        ("1,000", "1000", "digit-comma-digit in the text -> every PUNCT char is deleted, not spaced"),
        ("red, white", "red white", "',' followed by a space -> deleted"),
        ("t-shirt", "t shirt", "'-' touching no space -> replaced by a space"),
        ("hot - dog", "hot dog", "'-' touching a space -> deleted, then whitespace collapsed by split/join"),
        ("3.5", "3.5", "a period followed by a digit is kept"),
        ("Mr. T", "mr t", "period before a space is removed"),
        ("yes!", "yes", "'!' touching no space -> space, then stripped by split/join"),
        ("  Yes\n", "yes", "newline/tab to space, strip, lowercase"),
        ("dont", "don't", "apostrophe-less contraction restored"),
        ("whats up", "what's up", "contraction table applies word by word"),
        ("can't", "can't", "already-apostrophised words are untouched"),
        ("Im", "im", "the official table's key 'Im' is capitalised, so it never matches after lowercasing"),
        ("none", "0", "'none' is a number word -> '0'"),
        ("ten", "10", "number words stop at ten"),
        ("eleven", "eleven", "... so 'eleven' is left alone"),
        ("(a) 2", "2", "'(' touches no space -> space; ')' precedes a space -> deleted; article dropped"),
        ("a:b", "a:b", "':' is not in the (current official) PUNCT list"),
    ],
)
def test_normalize_answer_official_rules(raw, expected, rule):
    assert normalize_answer(raw) == expected, rule


def test_process_punctuation_alone_keeps_case_and_words():
    # Ground-truth answers get only this step in the official metric: no lowercasing, no number words.
    assert process_punctuation("Two.") == "Two"
    assert process_punctuation("the dog's") == "the dog's"


def test_period_strip_count_quirk_is_kept():
    # vqaEval passes re.UNICODE (= 32) as the `count` of periodStrip.sub: at most 32 periods go.
    assert process_punctuation("." * 40) == "." * 8


# ------------------------------------------------------------------------------- soft scores
def test_soft_scores_hand_computed():
    # "two" normalises to "2": 3 + 1 = 4 votes -> 1.0; "3": 6 votes -> 1.0.
    assert soft_scores(["2"] * 3 + ["two"] + ["3"] * 6) == [
        {"answer": "2", "score": 1.0}, {"answer": "3", "score": 1.0}
    ]
    assert soft_scores(["yes"] * 2 + ["no"] * 8) == [{"answer": "no", "score": 1.0}, {"answer": "yes", "score": 0.6}]
    assert soft_scores(["Red"] + ["blue"] * 3 + ["a blue"] * 0 + ["green"] * 6) == [
        {"answer": "green", "score": 1.0}, {"answer": "blue", "score": 0.9}, {"answer": "red", "score": 0.3},
    ]
    # Exact decimals, not 3 * 0.3 = 0.8999999999999999.
    assert soft_scores(["x"] * 3)[0]["score"] == 0.9


# ------------------------------------------------------------------------- VQA v2 official route
Q = [  # (image_id, question_id, question, 10 answers, answer_type, question_type)
    (262148, 262148000, "How many dogs?", ["2"] * 3 + ["two"] + ["3"] * 6, "number", "how many"),
    (262148, 262148001, "Is it sunny?", ["yes"] * 2 + ["no"] * 8, "yes/no", "is it"),
    (393225, 393225000, "What color is the bus?", ["Red"] + ["blue"] * 3 + ["green"] * 6, "other", "what color is the"),
    (393225, 393225001, "What is he holding?",
     ["purple"] * 7 + ["red"] + ["the umbrella"] * 2, "other", "what is he"),
]


def vqa_files(tmp_path: Path, subtype: str = "val2014", rows=Q) -> tuple[Path, Path]:
    questions = {
        "info": {"description": "tiny"}, "task_type": "Open-Ended", "data_type": "mscoco",
        "license": {}, "data_subtype": subtype,
        "questions": [{"image_id": i, "question": q, "question_id": qid, "extra": 1} for i, qid, q, *_ in rows],
    }
    annotations = {
        "info": {}, "license": {}, "data_subtype": subtype,
        "annotations": [
            {
                "question_id": qid, "image_id": i, "question_type": qt, "answer_type": at,
                "multiple_choice_answer": ans[0],
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(ans)],
            }
            for i, qid, _, ans, at, qt in rows
        ],
    }
    return (write_json(tmp_path / f"v2_OpenEnded_mscoco_{subtype}_questions.json", questions),
            write_json(tmp_path / f"v2_mscoco_{subtype}_annotations.json", annotations))


def test_vqa_official_route(tmp_path):
    qpath, apath = vqa_files(tmp_path)
    table, report = parse_vqa_official(qpath, apath)
    assert table.schema.equals(VQA_SCHEMA)
    assert (report.records_read, report.records_written, report.records_skipped) == (4, 4, 0)
    assert report.notes == {}  # every question_id is image_id*1000+k
    rows = table.to_pylist()
    assert rows[0]["question_id"] == "262148000"  # ints stored as their decimal text
    assert rows[0]["image_id"] == "COCO_val2014_000000262148"
    assert rows[0]["raw_answers"] == ["2", "2", "2", "two", "3", "3", "3", "3", "3", "3"]
    assert rows[0]["answers"] == answers(**{"2": 1.0, "3": 1.0})
    assert rows[1]["answers"] == answers(no=1.0, yes=0.6)
    assert rows[2]["answers"] == answers(green=1.0, blue=0.9, red=0.3)
    assert rows[3]["answers"] == answers(purple=1.0, umbrella=0.6, red=0.3)
    assert [r["answer_type"] for r in rows] == ["number", "yes/no", "other", "other"]
    assert rows[2]["question_type"] == "what color is the"
    assert all(r["is_topk_optimal"] is None for r in rows)
    meta = table_metadata(table)
    assert (meta["dataset"], meta["split"], meta["family"]) == ("vqa_v2", "val2014", "vqa")
    assert [s["sha256"] for s in meta["sources"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (qpath, apath)
    ]


def test_vqa_questions_without_annotations_are_unlabelled(tmp_path):
    qpath, _ = vqa_files(tmp_path, subtype="test-dev2015")
    table, _ = parse_vqa_official(qpath)
    row = table.to_pylist()[0]
    assert row["image_id"] == "COCO_test2015_000000262148"  # test-dev questions use test2015 images
    assert row["answers"] is None and row["raw_answers"] is None and row["answer_type"] is None


def lxmert_records(rows=Q, with_raw: bool = True) -> list[dict]:
    out = []
    for i, qid, q, ans, at, qt in reversed(rows):  # label dicts in a different key order than ours
        label = {a["answer"]: a["score"] for a in reversed(soft_scores(ans))}
        record = {"img_id": f"COCO_val2014_{i:012d}", "sent": q, "question_id": qid,
                  "question_type": qt, "answer_type": at, "label": label}
        if with_raw:
            record["answers"] = [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                 for k, a in enumerate(ans)]
        out.append(record)
    return out[::-1]


def test_lxmert_route_gives_the_same_table(tmp_path):
    qpath, apath = vqa_files(tmp_path)
    official, _ = parse_vqa_official(qpath, apath)
    lx_path = write_json(tmp_path / "minival.json", lxmert_records())
    lxmert, report = parse_vqa_lxmert(lx_path)
    assert report.split == "minival"
    assert lxmert.equals(official)  # content; metadata (route, sources) differs by design
    # Real LXMERT files carry no raw answers: only raw_answers differs then.
    plain, _ = parse_vqa_lxmert(write_json(tmp_path / "plain.json", lxmert_records(with_raw=False)))
    assert plain.column("raw_answers").null_count == plain.num_rows
    assert plain.drop_columns(["raw_answers"]).equals(official.drop_columns(["raw_answers"]))


# ------------------------------------------------------------------------------------------ GQA
GQA = {
    "07333408": {"imageId": "2375429", "question": "What is on the white wall?", "answer": "pipe",
                 "fullAnswer": "The pipe is on the wall.", "isBalanced": True,
                 "types": {"structural": "query", "semantic": "rel", "detailed": "relS"}, "semantic": []},
    "201307251": {"imageId": "n161313", "question": "Is it an indoors scene?", "answer": "yes",
                  "types": {"structural": "verify", "semantic": "global", "detailed": "place"}},
    "20968379": {"imageId": "n15740", "question": "Who is wearing the shirt?"},  # test-like: no answer, no types
}


def test_gqa_balanced(tmp_path):
    path = write_json(tmp_path / "testdev_balanced_questions.json", GQA)
    table, report = parse_gqa_balanced(path)
    assert report.split == "testdev" and table.num_rows == 3
    rows = table.to_pylist()
    assert rows[0] == {
        "question_id": "07333408", "image_id": "2375429", "question": "What is on the white wall?",
        "answers": [{"answer": "pipe", "score": 1.0}], "answer_type": "query", "question_type": "rel",
        "raw_answers": None, "is_topk_optimal": None,
    }
    assert rows[1]["answer_type"] == "verify" and rows[1]["image_id"] == "n161313"
    assert rows[2]["answers"] is None and rows[2]["answer_type"] is None
    lx = [{"question_id": qid, "img_id": r["imageId"], "sent": r["question"], **(
        {"label": {r["answer"]: 1.0}} if "answer" in r else {})} for qid, r in GQA.items()]
    lx_table, _ = parse_gqa_lxmert(write_json(tmp_path / "testdev.json", lx))
    keep = ["question_id", "image_id", "question", "answers"]
    assert lx_table.select(keep).equals(table.select(keep))
    # Written back in VL-T5 form, GQA ids stay strings (leading zeros matter); VQA ids become ints.
    assert [r["question_id"] for r in vl_t5_vqa_records(table)] == ["07333408", "201307251", "20968379"]
    assert vl_t5_vqa_records(table)[0]["label"] == {"pipe": 1.0}
    assert "label" not in vl_t5_vqa_records(table)[2]


# ------------------------------------------------------------------------- captions + Karpathy
def coco_image(cocoid: int, folder: str, split: str, captions: list[str], imgid: int) -> dict:
    return {
        "filepath": folder, "filename": f"COCO_{folder}_{cocoid:012d}.jpg", "imgid": imgid, "split": split,
        "cocoid": cocoid, "sentids": list(range(imgid * 10, imgid * 10 + len(captions))),
        "sentences": [{"raw": c, "tokens": c.split(), "imgid": imgid, "sentid": imgid * 10 + k}
                      for k, c in enumerate(captions)],
    }


def dataset_coco(tmp_path: Path) -> Path:
    images = [
        coco_image(458752, "train2014", "train", ["A man. ", " A dog."], 0),
        coco_image(262148, "val2014", "restval", ["Two dogs."], 1),
        coco_image(393225, "val2014", "val", ["A bus "], 2),
        coco_image(391895, "val2014", "test", ["A man with a red helmet on a small moped on a dirt road. "], 3),
    ]
    return write_json(tmp_path / "dataset_coco.json", {"dataset": "coco", "images": images})


def test_coco_karpathy_captions(tmp_path):
    table, report = parse_coco_karpathy(dataset_coco(tmp_path))
    assert report.records_written == 4
    rows = {r["image_id"]: r for r in table.to_pylist()}
    first = rows["COCO_train2014_000000458752"]
    assert first["captions"] == ["A man.", "A dog."]  # raw sentences, stripped
    assert (first["cocoid"], first["filepath"], first["split"], first["karpathy_split"]) == (
        458752, "train2014", "train", "train")
    assert rows["COCO_val2014_000000262148"]["split"] == "restval"
    assert rows["COCO_val2014_000000262148"]["karpathy_split"] == "train"
    assert rows["COCO_val2014_000000391895"]["captions"] == [
        "A man with a red helmet on a small moped on a dirt road."]
    assert rows["COCO_val2014_000000391895"]["sentids"] == [30]


def test_karpathy_rebuild(tmp_path):
    train_rows = [(458752, 458752000, "What is this?", ["net"] * 9 + ["nets"], "other", "what is this"),
                  (999999, 999999000, "Unknown image?", ["yes"] * 10, "yes/no", "is")]  # not in Karpathy file
    tq, ta = vqa_files(tmp_path, "train2014", train_rows)
    vq, va = vqa_files(tmp_path, "val2014")
    train, _ = parse_vqa_official(tq, ta)
    val, _ = parse_vqa_official(vq, va)
    vocab = {"": 0, "net": 1, "2": 2, "3": 3, "yes": 4, "no": 5, "green": 6, "red": 7, "umbrella": 8}
    vocab_path = write_json(tmp_path / "trainval_ans2label.json", vocab)
    splits, report = rebuild_karpathy_vqa([train, val], dataset_coco(tmp_path), vocab_path)

    assert {name: t.num_rows for name, t in splits.items()} == {
        "karpathy_train": 3, "karpathy_val": 2, "karpathy_test": 0}
    assert report.records_read == 6 and report.records_written == 5
    assert report.skipped == {"image not in the Karpathy split": 1}
    by_qid = {r["question_id"]: r for t in splits.values() for r in t.to_pylist()}
    # train image (train) and val2014 image 262148 (restval -> train)
    assert {q for q, r in by_qid.items() if r["image_id"].endswith("262148")} == {"262148000", "262148001"}
    assert splits["karpathy_train"].column("question_id").to_pylist() == ["458752000", "262148000", "262148001"]
    assert by_qid["458752000"]["answers"] == [{"answer": "net", "score": 1.0}]  # "nets" not in vocab
    assert by_qid["458752000"]["is_topk_optimal"] is True
    assert by_qid["393225000"]["answers"] == answers(green=1.0, red=0.3)  # "blue" dropped
    assert by_qid["393225000"]["is_topk_optimal"] is True
    # best answer "purple" (1.0) is out of vocabulary; the best in-vocabulary one scores 0.6
    assert by_qid["393225001"]["answers"] == answers(umbrella=0.6, red=0.3)
    assert by_qid["393225001"]["is_topk_optimal"] is False
    assert by_qid["393225001"]["raw_answers"][0] == "purple"  # raw answers kept for the official metric
    meta = table_metadata(splits["karpathy_val"])
    assert meta["split"] == "karpathy_val"
    assert {s["name"] for s in meta["sources"]} >= {"dataset_coco.json", "trainval_ans2label.json",
                                                    tq.name, ta.name, vq.name, va.name}

    check = check_karpathy_counts(splits)
    assert check.partial and not check.ok
    assert check.total == 5 and check.observed["karpathy_val"] == 2
    assert any("partial input" in m for m in check.messages())

    # VL-T5 JSON writer, read back through the LXMERT route.
    out = tmp_path / "vqa" / "karpathy_val.json"
    assert write_vl_t5_vqa_json(splits["karpathy_val"], out) == 2
    records = json.loads(out.read_text())
    assert records[1] == {
        "img_id": "COCO_val2014_000000393225", "sent": "What is he holding?", "question_id": 393225001,
        "question_type": "what is he", "answer_type": "other", "label": {"umbrella": 0.6, "red": 0.3},
        "is_topk_optimal": False,
    }
    back, _ = parse_vqa_lxmert(out)
    assert back.drop_columns(["raw_answers"]).equals(splits["karpathy_val"].drop_columns(["raw_answers"]))


def test_karpathy_check_reports_full_counts_ok():
    def fake(n: int, topk: int = 0) -> pa.Table:
        return pa.table({"is_topk_optimal": [True] * topk + [False] * (n - topk)})

    check = check_karpathy_counts({"karpathy_train": fake(605_102), "karpathy_val": fake(26_729),
                                   "karpathy_test": fake(26_280, 24_722)})
    assert check.ok and not check.partial and check.messages() == []
    off = check_karpathy_counts({"karpathy_train": fake(605_102), "karpathy_val": fake(26_729),
                                 "karpathy_test": fake(26_280, 24_000)})
    assert not off.ok and off.messages() == ["karpathy_test topk-optimal: 24,000, published 24,722"]


# ----------------------------------------------------------------------------------------- NLVR2
def test_nlvr2_raw_and_lxmert_agree(tmp_path):
    raw = [
        {"identifier": "train-10171-0-0", "sentence": "One dog.", "label": "True", "left_url": "http://l",
         "right_url": "http://r", "writer": "3", "synset": "dog", "query": "dogs 1", "directory": 12,
         "validation": {"1": "True"}},
        {"identifier": "train-10171-1-0", "sentence": "One dog.", "label": "False"},
    ]
    table, _ = parse_nlvr2(write_jsonl(tmp_path / "train.json", raw))
    rows = table.to_pylist()
    assert rows[0]["img0"] == "train-10171-0-img0" and rows[0]["img1"] == "train-10171-0-img1"
    assert [r["label"] for r in rows] == [True, False]
    assert rows[1]["left_url"] is None and rows[1]["writer"] is None
    lx = [{"identifier": r["identifier"], "img0": r["identifier"][:-2] + "-img0",
           "img1": r["identifier"][:-2] + "-img1", "label": int(r["label"] == "True"), "sent": r["sentence"],
           "uid": f"nlvr2_train_{i}"} for i, r in enumerate(raw)]
    lx_table, report = parse_nlvr2_lxmert(write_json(tmp_path / "lx_train.json", lx))
    assert report.split == "train"
    keep = ["identifier", "split", "img0", "img1", "sentence", "label"]
    assert lx_table.select(keep).equals(table.select(keep))
    assert lx_table.column("uid").to_pylist() == ["nlvr2_train_0", "nlvr2_train_1"]


# ---------------------------------------------------------------------------------- video tables
def test_tvqa_with_subtitles(tmp_path):
    subs = write_jsonl(tmp_path / "tv_subtitles.jsonl", [
        {"vid_name": "s03e02_seg02_clip_10", "sub": [{"text": " Sheldon : Hi.", "start": 0.862, "end": 1.862},
                                                      {"text": "Bye.", "start": 2, "end": 3.5}]},
    ])
    qa = [
        {"qid": 122039, "q": "Why is Howard here?", **{f"a{k}": f"because {k}" for k in range(5)},
         "answer_idx": 2, "ts": "20.16-25.12", "vid_name": "s03e02_seg02_clip_10",
         "show_name": "The Big Bang Theory"},
        {"qid": 7, "q": "Who?", **{f"a{k}": str(k) for k in range(5)}, "ts": "NaN-NaN",
         "vid_name": "friends_s01e01_seg01_clip_00", "show_name": "Friends"},
    ]
    index, sub_report = load_subtitles(subs)
    assert sub_report.records_read == 1 and len(index) == 1
    table, report = parse_video_qa(write_jsonl(tmp_path / "tvqa_val.jsonl", qa), dataset="tvqa", subtitles=index)
    rows = table.to_pylist()
    assert report.split == "val" and rows[0]["split"] == "val"
    assert rows[0]["choices"] == [f"because {k}" for k in range(5)]
    assert rows[0]["subtitles"] == [{"text": " Sheldon : Hi.", "start": 0.862, "end": 1.862},
                                    {"text": "Bye.", "start": 2.0, "end": 3.5}]
    assert rows[1]["subtitles"] == [] and rows[1]["answer_idx"] is None and rows[1]["ts"] == "NaN-NaN"
    assert report.notes == {"records without answer_idx": 1, "records whose video has no subtitles": 1}
    assert {s["name"] for s in table_metadata(table)["sources"]} == {"tvqa_val.jsonl", "tv_subtitles.jsonl"}
    no_subs, _ = parse_video_qa(tmp_path / "tvqa_val.jsonl", dataset="tvqa")
    assert no_subs.column("subtitles").null_count == 2


def test_tvc_with_descs(tmp_path):
    clips = [{"vid_name": "grey_s03e12_seg02_clip_17", "duration": 94.03, "ts": [35.73, 40.9], "clip_id": 86602,
              "descs": [{"desc": "A man talks.", "desc_id": 62633, "type": "v", "from_retrieval": True},
                        {"desc": "He leaves.", "desc_id": 62634, "type": "vt", "from_retrieval": False}]}]
    table, _ = parse_video_captions(write_jsonl(tmp_path / "tvc_train_release.jsonl", clips), dataset="tvc")
    assert table.to_pylist() == [{
        "clip_id": 86602, "vid_name": "grey_s03e12_seg02_clip_17", "ts": [35.73, 40.9], "duration": 94.03,
        "captions": ["A man talks.", "He leaves."], "desc_ids": [62633, 62634], "desc_types": ["v", "vt"],
        "subtitles": None, "split": "train_release",
    }]


# ----------------------------------------------------------------------------- media index + io
def test_media_index(tmp_path):
    root = tmp_path / "images"
    (root / "val2014").mkdir(parents=True)
    (root / "dev" / "7").mkdir(parents=True)
    files = {"val2014/COCO_val2014_000000391895.jpg": b"\xff\xd8jpeg",
             "dev/7/dev-850-0-img0.png": b"png bytes", "dev/7/.partial.tmp": b"x"}
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    table = build_media_index(root, "**/*", "image")
    assert table.column("rel_path").to_pylist() == ["dev/7/dev-850-0-img0.png", "val2014/COCO_val2014_000000391895.jpg"]
    assert table.column("media_id").to_pylist() == ["dev-850-0-img0", "COCO_val2014_000000391895"]
    assert table.column("sha256").to_pylist() == [
        hashlib.sha256(files[r]).hexdigest() for r in table.column("rel_path").to_pylist()]
    assert table.column("size").to_pylist() == [9, 6]
    assert set(table.column("kind").to_pylist()) == {"image"}
    listed = build_media_index(root, ["val2014/COCO_val2014_000000391895.jpg"], "image")
    assert listed.column("media_id").to_pylist() == ["COCO_val2014_000000391895"]
    back = read_table(write_table(table, tmp_path / "media.arrow"))
    assert back.equals(table) and table_metadata(back)["kind"] == "image"


def test_write_table_is_atomic_and_reads_memory_mapped(tmp_path):
    table, _ = parse_coco_karpathy(dataset_coco(tmp_path))
    target = tmp_path / "out" / "captions.arrow"
    write_table(table, target)
    write_table(table, target)  # overwrite in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["captions.arrow"]
    back = read_table(target)
    assert back.equals(table)
    assert table_metadata(back)["dataset"] == "coco_karpathy"
    with pa.memory_map(str(target)) as source:  # a real IPC *file* (random access), not a stream
        assert pa.ipc.open_file(source).num_record_batches >= 1
