"""Parse the real, unmodified upstream files in tests/fixtures/real and check every record landed.

Expectations are computed independently from the raw files (plain ``json``), never from our parsers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

from pipelines.tables import (
    VIDEO_CAPTION_SCHEMA,
    VIDEO_QA_SCHEMA,
    fill_answer_idx,
    parse_nlvr2,
    parse_tvqa_solution,
    parse_video_captions,
    parse_video_qa,
    read_table,
    table_metadata,
    write_table,
)

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"  # upstream files, see its README.md


def real_file(name: str) -> Path:
    path = REAL / name
    assert path.is_file(), f"real fixture {name} missing from {REAL} (tracked in the repository)"
    return path


def raw_jsonl(path: Path) -> list[dict]:
    """Independent reader: every non-blank line is one record."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_roundtrip(table, tmp_path: Path, source: Path) -> None:
    """Written atomically, read back memory-mapped, identical, with provenance of the source file."""
    out = write_table(table, tmp_path / "t.arrow")
    back = read_table(out)
    assert back.equals(table)
    meta = table_metadata(back)
    assert meta["sources"][0]["sha256"] == sha256(source)
    assert meta["sources"][0]["name"] == source.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.arrow"]  # no temp file left behind


# ----------------------------------------------------------------------------------------------- NLVR2
def test_nlvr2_dev_every_record(tmp_path):
    path = real_file("nlvr2_dev.json")
    raw = raw_jsonl(path)
    table, report = parse_nlvr2(path)
    assert len(raw) == 6_982  # README count
    assert table.num_rows == report.records_written == report.records_read == 6_982
    assert report.records_skipped == 0
    rows = table.to_pylist()
    for record, row in zip(raw, rows, strict=True):
        assert row["identifier"] == record["identifier"]
        assert row["sentence"] == record["sentence"]
        assert row["label"] is {"True": True, "False": False}[record["label"]]
        assert row["left_url"] == record["left_url"]
        assert row["right_url"] == record["right_url"]
        assert row["writer"] == record["writer"]
        assert row["synset"] == record["synset"]
        assert row["query"] == record["query"]
        assert row["split"] == "dev"
        assert row["uid"] is None
    # A hand-checked record: the very first line of the file.
    assert rows[0]["identifier"] == "dev-850-0-0"
    assert (rows[0]["img0"], rows[0]["img1"]) == ("dev-850-0-img0", "dev-850-0-img1")
    assert rows[0]["label"] is False
    meta = table_metadata(table)
    assert (meta["dataset"], meta["split"], meta["family"]) == ("nlvr2", "dev", "nlvr2")
    check_roundtrip(table, tmp_path, path)


def test_nlvr2_dev_labels_match_independent_count():
    path = real_file("nlvr2_dev.json")
    expected = Counter(record["label"] for record in raw_jsonl(path))
    table, _ = parse_nlvr2(path)
    observed = Counter(table.column("label").to_pylist())
    assert observed[True] == expected["True"]
    assert observed[False] == expected["False"]
    assert observed[True] + observed[False] == 6_982


def test_nlvr2_dev_images_exist_in_hash_file():
    path = real_file("nlvr2_dev.json")
    hashes = json.loads(real_file("nlvr2_dev_hashes.json").read_text())
    # The hash file is keyed by image *file* names: "dev-850-0-img0.png" (split-set-pair-imgN.png).
    assert all(re.fullmatch(r"dev-\d+-\d+-img[01]\.png", key) for key in hashes), list(hashes)[:5]
    table, _ = parse_nlvr2(path)
    missing = [
        name
        for img0, img1 in zip(table.column("img0").to_pylist(), table.column("img1").to_pylist(), strict=True)
        for name in (f"{img0}.png", f"{img1}.png")
        if name not in hashes
    ]
    assert missing == []


# ---------------------------------------------------------------------------------------------- How2QA
def test_how2qa_val_every_record(tmp_path):
    path = real_file("how2qa_val_release.jsonl")
    raw = raw_jsonl(path)
    table, report = parse_video_qa(path, dataset="how2qa")
    assert len(raw) == 3_115
    assert table.num_rows == report.records_written == 3_115
    assert table.schema.equals(VIDEO_QA_SCHEMA)
    rows = table.to_pylist()
    for record, row in zip(raw, rows, strict=True):
        assert len(row["choices"]) == 4
        assert row["choices"] == [record[f"a{k}"] for k in range(4)]
        assert (row["qid"], row["vid_name"], row["question"], row["ts"], row["answer_idx"]) == (
            record["qid"], record["vid_name"], record["q"], record["ts"], record["answer_idx"]
        )
        assert row["show_name"] is None and row["subtitles"] is None
        assert row["split"] == "val_release"
    # Spot check line 1, independently of the loop above.
    first = json.loads(path.read_text().splitlines()[0])
    assert rows[0]["qid"] == first["qid"] == 30351
    assert rows[0]["choices"][rows[0]["answer_idx"]] == "Www.lyndaleplants.com."
    check_roundtrip(table, tmp_path, path)


def test_how2qa_val_qids_match_the_sample_submission():
    path = real_file("how2qa_val_release.jsonl")
    sample = json.loads(real_file("how2qa_val_predictions_sample.json").read_text())
    table, _ = parse_video_qa(path, dataset="how2qa")
    assert set(table.column("qid").to_pylist()) == {int(k) for k in sample}


# ------------------------------------------------------------------------------------------------ YC2C
def test_yc2c_val_one_caption_per_clip(tmp_path):
    path = real_file("yc2c_val_release.jsonl")
    raw = raw_jsonl(path)
    table, report = parse_video_captions(path, dataset="yc2c")
    assert len(raw) == 3_492
    assert table.num_rows == report.records_written == 3_492
    assert table.schema.equals(VIDEO_CAPTION_SCHEMA)
    rows = table.to_pylist()
    for record, row in zip(raw, rows, strict=True):
        assert len(row["captions"]) == 1
        assert row["captions"] == [d["desc"] for d in record["descs"]]
        assert row["desc_ids"] == [d["desc_id"] for d in record["descs"]]
        assert (row["clip_id"], row["vid_name"], row["duration"]) == (
            record["clip_id"], record["vid_name"], float(record["duration"])
        )
        assert row["ts"] is None
        assert row["split"] == "val_release"
    assert rows[0] == {
        "clip_id": 13447, "vid_name": "ljyO7IaGWLY_10", "ts": None, "duration": 7.0,
        "captions": ["layer marinara sauce and pierogies"], "desc_ids": [10337], "desc_types": [None],
        "subtitles": None, "split": "val_release",
    }
    check_roundtrip(table, tmp_path, path)


# ------------------------------------------------------------------------------------------------- TVC
def test_tvc_test_public_every_clip(tmp_path):
    path = real_file("tvc_test_public_release.jsonl")
    text = path.read_text()
    raw = raw_jsonl(path)
    # The TVCaption README says 5,419: that is `wc -l`, i.e. newline characters. The file's last
    # record has no trailing newline, so it holds 5,420 JSON records (clip_ids 102866..108285, contiguous).
    assert text.count("\n") == 5_419
    assert not text.endswith("\n")
    assert len(raw) == 5_420
    ids = sorted(record["clip_id"] for record in raw)
    assert ids == list(range(102_866, 108_286))
    table, report = parse_video_captions(path, dataset="tvc")
    assert table.num_rows == report.records_written == report.records_read == len(raw)
    assert report.notes["clips without descs"] == len(raw)  # test file: no captions
    rows = table.to_pylist()
    for record, row in zip(raw, rows, strict=True):
        assert (row["clip_id"], row["vid_name"], row["duration"]) == (
            record["clip_id"], record["vid_name"], record["duration"]
        )
        assert row["ts"] == [float(v) for v in record["ts"]]
        assert row["captions"] == [] and row["desc_ids"] == []
        assert row["split"] == "test_public_release"
    last = json.loads(text.splitlines()[-1])
    assert rows[-1]["clip_id"] == last["clip_id"] == 108_285
    assert rows[-1]["ts"] == [0.0, 10.68]  # an int 0 in the file, float in the table
    check_roundtrip(table, tmp_path, path)


# ------------------------------------------------------------------------------------------------ TVQA
def test_tvqa_val_solution_counts():
    path = real_file("tvqa_val_solution.json")
    document = json.loads(path.read_text())
    independent = sum(len(per_show) for per_show in document["solution"].values())
    solution, report = parse_tvqa_solution(path)
    assert len(solution) == independent == report.records_read == report.records_written
    # Observed in the file (and equal to TVQA's published val size, docs/data.md §1): 15,253 questions over 6 shows.
    assert independent == 15_253
    assert set(solution.values()) <= set(range(5))
    for per_show in document["solution"].values():
        for qid, idx in list(per_show.items())[:50]:
            assert solution[int(qid)] == idx


def test_tvqa_solution_fills_label_less_records(tmp_path):
    solution_path = real_file("tvqa_val_solution.json")
    solution, _ = parse_tvqa_solution(solution_path)
    document = json.loads(solution_path.read_text())
    show, per_show = next(iter(document["solution"].items()))
    qids = [int(q) for q in list(per_show)[:3]]
    unknown = max(solution) + 1
    lines = [
        {"qid": qid, "q": "why?", **{f"a{k}": f"answer {k}" for k in range(5)}, "ts": "1.0-2.0",
         "vid_name": "s01e01_seg01_clip_00", "show_name": show}
        for qid in [*qids, unknown]
    ]
    path = tmp_path / "tvqa_test_public.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    table, report = parse_video_qa(path, dataset="tvqa")
    assert report.notes["records without answer_idx"] == 4
    filled, n = fill_answer_idx(table, solution)
    assert n == 3
    assert filled.column("answer_idx").to_pylist() == [per_show[str(q)] for q in qids] + [None]
    assert table_metadata(filled) == table_metadata(table)
