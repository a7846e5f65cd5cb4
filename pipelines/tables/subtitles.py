"""Subtitle files (``{tv,how2,yc2}_subtitles.jsonl``: ``{"vid_name", "sub": [{"text","start","end"}]}``),
loaded once and joined by ``vid_name`` into the video tables (VL-Adapter feeds the whole video's subtitles)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.tables.errors import line_ref
from pipelines.tables.hashing import SourceDigest, digest_file
from pipelines.tables.readers import Record, iter_jsonl
from pipelines.tables.report import ParseReport

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
    first_line: dict[str, int] = {}
    for line_no, raw in iter_jsonl(path):
        report.records_read += 1
        rec = Record(raw, path, line_ref(line_no))
        vid_name = rec.text("vid_name")
        if vid_name in first_line:
            raise rec.error("vid_name", f"duplicate video (first at line {first_line[vid_name]})", vid_name)
        first_line[vid_name] = line_no
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
