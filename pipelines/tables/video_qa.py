"""TVQA and How2QA to the video-QA table, plus the TVQA val solution file (VALUE EvaluationTools).

Records: ``{qid, q, a0..a4 (TVQA) | a0..a3 (How2QA), answer_idx (not on test), ts: "20.16-25.12",
vid_name, show_name (TVQA)}``. Subtitles are joined by ``vid_name`` when an index or file is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pyarrow as pa

from pipelines.tables.errors import key_ref
from pipelines.tables.readers import Record, expect_dict, iter_unique_records, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import VIDEO_QA_SCHEMA, BatchedColumns
from pipelines.tables.splits import split_from_stem
from pipelines.tables.subtitles import SubtitleIndex, as_index, finish_video_table, report_for, subtitles_for
from vlpet.catalog import CATALOG

FAMILY = "video_qa"
VideoQADataset = Literal["tvqa", "how2qa"]
# Choices per question: the size of the task's closed answer set in the catalogue (a0..a4 / a0..a3).
NUM_CHOICES: dict[str, int] = {t: len(CATALOG[t].answer_vocabulary or ()) for t in ("tvqa", "how2qa")}


def parse_video_qa(
    path: Path,
    *,
    dataset: VideoQADataset,
    split: str | None = None,
    subtitles: SubtitleIndex | Path | None = None,
) -> tuple[pa.Table, ParseReport]:
    """TVQA / How2QA JSONL -> video-QA table with exactly 5 / 4 choices per question."""
    if dataset not in NUM_CHOICES:
        raise ValueError(f"dataset must be one of {sorted(NUM_CHOICES)}, got {dataset!r}")
    path = Path(path)
    n_choices = NUM_CHOICES[dataset]
    split = split or split_from_stem(path, dataset)
    index = as_index(subtitles)
    report = report_for(dataset, split, path, index)
    cols = BatchedColumns(VIDEO_QA_SCHEMA)
    for rec, qid in iter_unique_records(path, report, "qid", Record.integer):
        choices = [rec.text(f"a{k}") for k in range(n_choices)]
        answer_idx = rec.integer("answer_idx", required=False)
        if answer_idx is not None and not 0 <= answer_idx < n_choices:
            raise rec.error("answer_idx", f"expected an index in 0..{n_choices - 1}", answer_idx)
        if answer_idx is None:
            report.note("records without answer_idx")
        vid_name = rec.text("vid_name")
        subs = subtitles_for(index, vid_name, report, "records whose video has no subtitles")
        cols.append({
            "qid": qid,
            "vid_name": vid_name,
            "question": rec.text("q"),
            "choices": choices,
            "answer_idx": answer_idx,
            "ts": rec.text("ts"),
            "show_name": rec.text("show_name", required=False),
            "subtitles": subs,
            "split": split,
        })
    table = finish_video_table(cols, report, path, index, family=FAMILY, dataset=dataset, split=split)
    return table, report


def parse_tvqa_solution(path: Path) -> tuple[dict[int, int], ParseReport]:
    """``{"split": "tvqa_val", "solution": {show: {qid: answer_idx}}}`` -> ``{qid: answer_idx}``."""
    path = Path(path)
    document = expect_dict(path, load_json(path), "the TVQA solution file")
    top = Record(document, path, "top level")
    split = top.text("split", required=False) or path.stem
    shows = top.obj("solution")
    report = ParseReport("tvqa", split, sources=[str(path)])
    solution: dict[int, int] = {}
    where: dict[int, str] = {}
    for show, answers in shows.items():
        show_rec = top.sub(answers, f"solution[{show!r}]")
        for key, idx in show_rec.data.items():
            report.records_read += 1
            rec = Record({"qid": key, "answer_idx": idx}, path, f"solution[{show!r}] {key_ref(key)}")
            if not key.isdigit():
                raise rec.error("qid", "expected a numeric question id", key)
            answer_idx = rec.integer("answer_idx")
            if not 0 <= answer_idx < NUM_CHOICES["tvqa"]:
                raise rec.error("answer_idx", "expected an index in 0..4", answer_idx)
            qid = int(key)
            if qid in solution:
                raise rec.error("qid", f"duplicate qid (also under {where[qid]})", key)
            solution[qid] = answer_idx
            where[qid] = f"show {show!r}"
            report.note(f"qids of {show}")
    report.records_written = len(solution)
    return solution, report


def fill_answer_idx(table: pa.Table, solution: Mapping[int, int]) -> tuple[pa.Table, int]:
    """Fill null ``answer_idx`` from a solution mapping; returns (new table, number of rows filled).

    Rows the solution does not cover stay null. An existing answer that disagrees with the solution
    means the files are mixed up, so it is an error naming the qid.
    """
    filled = 0
    out: list[int | None] = []
    for qid, idx in zip(table.column("qid").to_pylist(), table.column("answer_idx").to_pylist(), strict=True):
        known = solution.get(qid)
        if idx is None and known is not None:
            idx, filled = known, filled + 1
        elif idx is not None and known is not None and idx != known:
            raise ValueError(f"qid {qid}: answer_idx {idx} in the table disagrees with the solution's {known}")
        out.append(idx)
    position = table.schema.get_field_index("answer_idx")
    column = pa.array(out, type=pa.int64())
    return table.set_column(position, table.schema.field("answer_idx"), column), filled
