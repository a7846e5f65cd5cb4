"""Subtitle files (``{tv,how2,yc2}_subtitles.jsonl``: ``{"vid_name", "sub": [{"text","start","end"}]}``),
loaded once and joined by ``vid_name`` into the video tables (VL-Adapter feeds the whole video's subtitles)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.tables.arrow_io import attach_metadata
from pipelines.tables.hashing import SourceDigest, digest_file
from pipelines.tables.readers import Record, iter_unique_records
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import BatchedColumns

SubtitleLines = list[dict[str, Any]]


@dataclass(frozen=True)
class SubtitleIndex:
    """vid_name -> subtitle lines (text kept verbatim; consumers strip), with the file it came from."""

    by_video: Mapping[str, SubtitleLines]
    source: SourceDigest | None = None

    def get(self, vid_name: str) -> SubtitleLines | None:
        return self.by_video.get(vid_name)

    def __len__(self) -> int:
        return len(self.by_video)


def load_subtitles(path: Path) -> tuple[SubtitleIndex, ParseReport]:
    """Read a subtitles JSONL; duplicate ``vid_name`` lines are an error (which one would be right?)."""
    path = Path(path)
    report = ParseReport("subtitles", path.stem, sources=[str(path)])
    by_video: dict[str, SubtitleLines] = {}
    for rec, vid_name in iter_unique_records(path, report, "vid_name", Record.text, "video"):
        lines = []
        for j, item in enumerate(rec.array("sub")):
            sub = rec.sub(item, f"sub[{j}]")
            lines.append({"text": sub.text("text"), "start": sub.number("start"), "end": sub.number("end")})
        by_video[vid_name] = lines
    report.records_written = len(by_video)
    return SubtitleIndex(by_video, digest_file(path)), report


def as_index(subtitles: SubtitleIndex | Path | str | None) -> SubtitleIndex | None:
    """Accept a loaded index (shared across splits) or a path to load."""
    if subtitles is None or isinstance(subtitles, SubtitleIndex):
        return subtitles
    return load_subtitles(Path(subtitles))[0]


def report_for(dataset: str, split: str, path: Path, index: SubtitleIndex | None) -> ParseReport:
    """The parse report of a video table: its annotation file and, when joined, the subtitles file."""
    return ParseReport(dataset, split, sources=[str(path)] + ([index.source.path] if index and index.source else []))


def subtitles_for(index: SubtitleIndex | None, vid_name: str, report: ParseReport,
                  missing: str) -> SubtitleLines | None:
    """A video's subtitle lines: None without an index, [] (noted in the report as ``missing``) when the index
    has no entry for it."""
    if index is None:
        return None
    subs = index.get(vid_name)
    if subs is None:
        report.note(missing)
        return []
    return subs


def finish_video_table(cols: BatchedColumns, report: ParseReport, path: Path, index: SubtitleIndex | None, *,
                       family: str, dataset: str, split: str) -> pa.Table:
    """The parsed rows as a table carrying its sources' digests (annotation file, subtitles file)."""
    table = cols.table()
    report.records_written = table.num_rows
    sources = [digest_file(path)] + ([index.source] if index is not None and index.source is not None else [])
    return attach_metadata(table, family=family, dataset=dataset, split=split, sources=sources)
