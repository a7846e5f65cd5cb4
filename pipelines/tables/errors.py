"""The one error type every table parser raises, so callers can catch bad input in one place and
users read which file, which record and which field to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TableParseError(ValueError):
    """Bad upstream input: names the file, the record (``line 7`` / ``index 3`` / ``key '123'``) and the field."""

    def __init__(
        self,
        path: Path | str,
        message: str,
        *,
        record: str | None = None,
        field: str | None = None,
        value: Any = None,
        has_value: bool = False,
    ) -> None:
        self.path = Path(path)
        self.record = record
        self.field = field
        self.value = value
        parts = [str(self.path)]
        if record is not None:
            parts.append(record)
        if field is not None:
            parts.append(f"field {field!r}")
        text = ": ".join(parts) + f": {message}"
        if has_value:
            text += f" (got {_short(value)})"
        super().__init__(text)


def line_ref(line_no: int) -> str:
    """Record reference for JSON-lines files (1-based line number)."""
    return f"line {line_no}"


def index_ref(index: int) -> str:
    """Record reference for JSON lists (0-based index, as Python and jq count)."""
    return f"index {index}"


def key_ref(key: str) -> str:
    """Record reference for JSON objects keyed by id."""
    return f"key {key!r}"
