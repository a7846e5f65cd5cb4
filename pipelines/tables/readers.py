"""Reading upstream JSON / JSON-lines files and their records with typed, well-reported field access.

Every parser goes through here so that a truncated file, a malformed line or a field of the wrong
type produces the same kind of message: file, record number, field, offending value.
Unknown extra fields are simply never looked at (upstream files carry many we do not need).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import ijson

from pipelines.tables.errors import TableParseError, line_ref

if TYPE_CHECKING:
    from pipelines.tables.report import ParseReport

_MISSING = object()


def load_json(path: Path) -> Any:
    """Load a whole JSON document; a truncated or invalid file names the file and the position."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise TableParseError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise TableParseError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        # An error at the very end, or a string never closed, means the document stops early.
        truncated = exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")
        hint = " (the file looks truncated)" if truncated else ""
        raise TableParseError(
            path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None


# ------------------------------------------------------------------ streamed JSON documents
# The large upstream files (GQA balanced train 1.07M questions, VQA annotations 4.4M answers) are read with
# ijson's C backend, one record at a time, so a parser holds one record, never the whole document (json.load
# of GQA train alone needed ~6 GB). Errors read like ``load_json``'s: file, what went wrong, "truncated".

_KINDS = {"start_map": "dict", "start_array": "list", "string": "str", "number": "float", "boolean": "bool",
          "null": "NoneType"}


def _json_error(path: Path, exc: Exception) -> TableParseError:
    if isinstance(exc, UnicodeDecodeError):
        return TableParseError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "lexical error" in first and "invalid" in first:
        return TableParseError(path, f"not UTF-8 text or invalid JSON ({first})")
    truncated = "premature EOF" in first or (isinstance(exc, ijson.IncompleteJSONError) and "EOF" in text)
    hint = " (the file looks truncated)" if truncated else ""
    return TableParseError(path, f"invalid JSON ({first}){hint}")


@contextmanager
def _open_json(path: Path) -> Iterator[IO[bytes]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise TableParseError(path, "file not found") from None
    with handle:
        try:
            yield handle
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise _json_error(path, exc) from None


def json_top_level(path: Path, what: str, wanted: tuple[str, ...]) -> dict[str, Any]:
    """Check the document is a JSON object and find its top-level ``wanted`` fields without reading records.

    Returns ``{field: "list" | "dict"}`` for container fields and ``{field: value}`` for scalar fields that are
    present. The scan walks the small leading fields and stops at the first wanted container (the records),
    so it costs nothing on upstream files; a scalar written after the records costs one more pass, in C.
    """
    path = Path(path)
    found: dict[str, Any] = {}
    with _open_json(path) as handle:
        events = ijson.parse(handle, use_float=True)
        for prefix, event, value in events:
            if prefix == "":
                if event == "start_map" or event == "map_key" or event == "end_map":
                    continue
                raise TableParseError(path, f"expected {what} to be a JSON object, got {_KINDS.get(event, event)}")
            if "." in prefix:
                continue
            if event in ("start_map", "start_array"):
                found[prefix] = _KINDS[event]
                if prefix in wanted:
                    break
                depth = 1  # an unwanted container (e.g. "info"): skip it
                for _p, ev, _v in events:
                    depth += ev in ("start_map", "start_array")
                    depth -= ev in ("end_map", "end_array")
                    if depth == 0:
                        break
            else:
                found[prefix] = value
    for name in wanted:
        if name not in found:
            with _open_json(path) as handle:
                for value in ijson.items(handle, name, use_float=True):
                    if not isinstance(value, dict | list):
                        found[name] = value
                    else:
                        found[name] = "list" if isinstance(value, list) else "dict"
                    break
    return found


def iter_json_items(path: Path, prefix: str) -> Iterator[Any]:
    """The elements under ``prefix`` (``"item"``: a top-level list; ``"questions.item"``), one at a time."""
    path = Path(path)
    with _open_json(path) as handle:
        yield from ijson.items(handle, prefix, use_float=True)


def iter_json_object(path: Path, what: str) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of a top-level JSON object, one pair at a time (GQA: question id -> record)."""
    path = Path(path)
    with _open_json(path) as handle:
        first = handle.read(1)
        while first.isspace():
            first = handle.read(1)
        if first != b"{":
            kind = {b"[": "list", b'"': "str", b"": "nothing (empty file)"}.get(first, "a scalar")
            raise TableParseError(path, f"expected {what} to be a JSON object, got {kind}")
        handle.seek(0)
        yield from ijson.kvitems(handle, "", use_float=True)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for a JSON-lines file; blank lines are skipped, not counted as records.

    A last line without a trailing newline is still a record (several upstream files end that way).
    """
    path = Path(path)
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        raise TableParseError(path, "file not found") from None
    with handle:
        line_no = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    hint = ""
                    if line_no == 1 and line.lstrip().startswith("["):
                        hint = " (this looks like one JSON list, not JSON lines: use the preprocessed-format parser)"
                    raise TableParseError(
                        path, f"invalid JSON at column {exc.colno}: {exc.msg}{hint}", record=line_ref(line_no)
                    ) from None
                if not isinstance(record, dict):
                    raise TableParseError(
                        path, "expected a JSON object per line", record=line_ref(line_no),
                        value=record, has_value=True,
                    )
                yield line_no, record
        except UnicodeDecodeError as exc:
            raise TableParseError(path, f"not UTF-8 text ({exc.reason})", record=line_ref(line_no + 1)) from None


def expect_list(path: Path, document: Any, what: str) -> list[Any]:
    """The document (or a part of it) must be a JSON list."""
    if not isinstance(document, list):
        raise TableParseError(path, f"expected {what} to be a JSON list, got {type(document).__name__}")
    return document


def expect_dict(path: Path, document: Any, what: str) -> dict[str, Any]:
    """The document (or a part of it) must be a JSON object."""
    if not isinstance(document, dict):
        raise TableParseError(path, f"expected {what} to be a JSON object, got {type(document).__name__}")
    return document


class Record:
    """Typed access to one upstream record; every failure names file, record and field.

    Each accessor has a fast path for the well-formed case (millions of calls on VQA/GQA) and falls
    back to ``_checked`` only to decide between None and an error.
    """

    __slots__ = ("data", "path", "ref")

    def __init__(self, data: Any, path: Path, ref: str) -> None:
        if not isinstance(data, dict):
            raise TableParseError(path, "expected a JSON object", record=ref, value=data, has_value=True)
        self.data = data
        self.path = path
        self.ref = ref

    def error(self, field: str | None, message: str, value: Any = _MISSING) -> TableParseError:
        """An error about this record (and optionally one field and its value)."""
        return TableParseError(
            self.path, message, record=self.ref, field=field,
            value=None if value is _MISSING else value, has_value=value is not _MISSING,
        )

    def has(self, field: str) -> bool:
        return field in self.data

    def _checked(self, field: str, required: bool, nullable: bool, ok: Callable[[Any], bool], expected: str) -> Any:
        if field not in self.data:
            if required:
                keys = ", ".join(sorted(map(str, self.data)))
                raise self.error(field, f"missing required field (record has: {keys})")
            return None
        value = self.data[field]
        if value is None:
            if required and not nullable:
                raise self.error(field, f"expected {expected}, got null")
            return None
        if not ok(value):
            raise self.error(field, f"expected {expected}", value)
        return value

    def text(self, field: str, *, required: bool = True, nullable: bool = False) -> str | None:
        """A string field; optional fields give None when absent or null."""
        value = self.data.get(field)
        if type(value) is str:
            return value
        return self._checked(field, required, nullable, _is_str, "a string")

    def integer(self, field: str, *, required: bool = True, nullable: bool = False) -> int | None:
        """An integer field (JSON booleans are rejected, although Python counts them as ints)."""
        value = self.data.get(field)
        if type(value) is int:
            return value
        return self._checked(field, required, nullable, _is_int, "an integer")

    def number(self, field: str, *, required: bool = True, nullable: bool = False) -> float | None:
        """An int or float field, returned as float."""
        value = self.data.get(field)
        if type(value) is float or type(value) is int:
            return float(value)
        value = self._checked(field, required, nullable, _is_number, "a number")
        return None if value is None else float(value)

    def array(self, field: str, *, required: bool = True, nullable: bool = False) -> list[Any] | None:
        """A JSON list field."""
        value = self.data.get(field)
        if type(value) is list:
            return value
        return self._checked(field, required, nullable, _is_list, "a list")

    def obj(self, field: str, *, required: bool = True, nullable: bool = False) -> dict[str, Any] | None:
        """A JSON object field."""
        value = self.data.get(field)
        if type(value) is dict:
            return value
        return self._checked(field, required, nullable, _is_dict, "an object")

    def sub(self, value: Any, field: str) -> Record:
        """A nested object (e.g. ``descs[2]``), reported as ``<record>, <field>``."""
        if not isinstance(value, dict):
            raise self.error(field, "expected an object", value)
        return Record(value, self.path, f"{self.ref}, {field}")


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def iter_unique_records(path: Path, report: ParseReport, key: str, read: Callable[[Record, str], Any],
                        what: str | None = None) -> Iterator[tuple[Record, Any]]:
    """``(record, key value)`` for each line of a JSON-lines file whose ``key`` must be unique (a repeated id
    would make the join or the answer ambiguous: it is an error naming both lines); counts records read."""
    first_line: dict[Any, int] = {}
    for line_no, raw in iter_jsonl(path):
        report.records_read += 1
        rec = Record(raw, path, line_ref(line_no))
        value = read(rec, key)
        if value in first_line:
            raise rec.error(key, f"duplicate {what or key} (first at line {first_line[value]})", value)
        first_line[value] = line_no
        yield rec, value

