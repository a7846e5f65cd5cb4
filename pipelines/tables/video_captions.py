"""TVC and YC2C to the video-caption table, one row per clip.

Records: TVC ``{vid_name, duration, ts: [start, end], clip_id, descs?: [{desc, desc_id, type, from_retrieval}]}``,
YC2C ``{vid_name, clip_id, duration, descs?: [{desc, desc_id}]}``. Test files have no ``descs``: the row gets
empty caption lists so the clip is still predicted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pyarrow as pa

from pipelines.tables.readers import Record, iter_unique_records
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import VIDEO_CAPTION_SCHEMA, BatchedColumns
from pipelines.tables.splits import split_from_stem
from pipelines.tables.subtitles import SubtitleIndex, as_index, finish_video_table, report_for, subtitles_for

FAMILY = "video_caption"
VideoCaptionDataset = Literal["tvc", "yc2c"]
_NEEDS_TS = {"tvc": True, "yc2c": False}


def _timestamps(rec: Record, required: bool) -> list[float] | None:
    ts = rec.array("ts", required=required)
    if ts is None:
        return None
    if len(ts) != 2 or any(isinstance(v, bool) or not isinstance(v, int | float) for v in ts):
        raise rec.error("ts", "expected [start, end] seconds", ts)
    return [float(ts[0]), float(ts[1])]


def parse_video_captions(
    path: Path,
    *,
    dataset: VideoCaptionDataset,
    split: str | None = None,
    subtitles: SubtitleIndex | Path | None = None,
) -> tuple[pa.Table, ParseReport]:
    """TVC / YC2C JSONL -> video-caption table (``ts`` required for TVC, absent -> null for YC2C)."""
    if dataset not in _NEEDS_TS:
        raise ValueError(f"dataset must be one of {sorted(_NEEDS_TS)}, got {dataset!r}")
    path = Path(path)
    split = split or split_from_stem(path, dataset)
    index = as_index(subtitles)
    report = report_for(dataset, split, path, index)
    cols = BatchedColumns(VIDEO_CAPTION_SCHEMA)
    for rec, clip_id in iter_unique_records(path, report, "clip_id", Record.integer):
        captions, desc_ids, desc_types = [], [], []
        descs = rec.array("descs", required=False)
        if descs is None:
            report.note("clips without descs")
        for j, item in enumerate(descs or []):
            desc = rec.sub(item, f"descs[{j}]")
            captions.append(desc.text("desc"))
            desc_ids.append(desc.integer("desc_id"))
            desc_types.append(desc.text("type", required=False))
        vid_name = rec.text("vid_name")
        subs = subtitles_for(index, vid_name, report, "clips whose video has no subtitles")
        cols.append({
            "clip_id": clip_id,
            "vid_name": vid_name,
            "ts": _timestamps(rec, _NEEDS_TS[dataset]),
            "duration": rec.number("duration", required=False),
            "captions": captions,
            "desc_ids": desc_ids,
            "desc_types": desc_types,
            "subtitles": subs,
            "split": split,
        })
    table = finish_video_table(cols, report, path, index, family=FAMILY, dataset=dataset, split=split)
    return table, report
