"""What a parse did, in numbers: callers (flows, lineage records, tests) check counts instead of trusting."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ParseReport:
    """Counts for one parse: records read, written, skipped (by reason) and non-fatal observations."""

    dataset: str
    split: str
    sources: list[str] = field(default_factory=list)
    records_read: int = 0
    records_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, n: int = 1) -> None:
        """Count a record that was read but deliberately not written."""
        self.skipped[reason] += n

    def note(self, what: str, n: int = 1) -> None:
        """Count something worth knowing that is not an error (e.g. a video without subtitles)."""
        self.notes[what] += n

    @property
    def records_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, for lineage records and logs."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "sources": list(self.sources),
            "records_read": self.records_read,
            "records_written": self.records_written,
            "records_skipped": self.records_skipped,
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
        }

    def __str__(self) -> str:
        text = (
            f"{self.dataset}/{self.split}: read {self.records_read}, wrote {self.records_written}, "
            f"skipped {self.records_skipped}"
        )
        if self.skipped:
            text += " (" + ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items())) + ")"
        return text
