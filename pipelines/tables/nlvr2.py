"""NLVR2 to the NLVR2 table, from the raw JSON-lines files (lil-lab/nlvr) or LXMERT's preprocessed lists.

An identifier ``dev-850-0-3`` is ``split-set-pair-sentence``; the two images of the example are
``dev-850-0-img0`` / ``-img1`` (the sentence index dropped), which are also the feature-file stems.
The raw ``validation`` / ``extra_validations`` annotator judgments are not kept (no consumer).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from pipelines.tables.arrow_io import attach_metadata
from pipelines.tables.errors import index_ref
from pipelines.tables.hashing import digest_file
from pipelines.tables.readers import Record, expect_list, iter_jsonl, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import NLVR2_SCHEMA, BatchedColumns

DATASET = "nlvr2"
FAMILY = "nlvr2"
_IDENTIFIER = re.compile(r"^(?P<split>[A-Za-z0-9]+)-(?P<set>\d+)-(?P<pair>\d+)-(?P<sentence>\d+)$")
_RAW_LABELS = {"True": True, "False": False}


def image_ids(identifier: str) -> tuple[str, str, str]:
    """``dev-850-0-3`` -> (``dev``, ``dev-850-0-img0``, ``dev-850-0-img1``); ValueError when malformed."""
    match = _IDENTIFIER.match(identifier)
    if match is None:
        raise ValueError("expected an identifier of the form <split>-<set>-<pair>-<sentence>")
    stem = f"{match['split']}-{match['set']}-{match['pair']}"
    return match["split"], f"{stem}-img0", f"{stem}-img1"


class _Rows:
    def __init__(self, path: Path) -> None:
        self.cols = BatchedColumns(NLVR2_SCHEMA)
        self.splits: set[str] = set()
        self.path = path
        self.seen: dict[str, str] = {}

    def add(self, rec: Record, *, sentence: str, label: bool, **optional: str | None) -> None:
        identifier = rec.text("identifier")
        try:
            split, img0, img1 = image_ids(identifier)
        except ValueError as exc:
            raise rec.error("identifier", str(exc), identifier) from None
        if identifier in self.seen:
            raise rec.error("identifier", f"duplicate identifier (first at {self.seen[identifier]})", identifier)
        self.seen[identifier] = rec.ref
        row = {"identifier": identifier, "split": split, "img0": img0, "img1": img1, "sentence": sentence,
               "label": label}
        row.update(optional)
        self.cols.append(row)
        self.splits.add(split)
        self.last = row

    def table(self) -> pa.Table:
        return self.cols.table()


def _finish(rows: _Rows, report: ParseReport, path: Path, split: str | None, route: str) -> pa.Table:
    table = rows.table()
    report.records_written = table.num_rows
    splits = sorted(rows.splits)
    report.split = split or (splits[0] if len(splits) == 1 else path.stem)
    return attach_metadata(
        table, family=FAMILY, dataset=DATASET, split=report.split, sources=[digest_file(path)], extra={"route": route}
    )


def parse_nlvr2(path: Path, *, split: str | None = None) -> tuple[pa.Table, ParseReport]:
    """Raw NLVR2 JSON lines -> NLVR2 table; label must be the string "True" or "False"."""
    path = Path(path)
    report = ParseReport(DATASET, split or "", sources=[str(path)])
    rows = _Rows(path)
    for line_no, raw in iter_jsonl(path):
        report.records_read += 1
        rec = Record(raw, path, f"line {line_no}")
        label = rec.text("label")
        if label not in _RAW_LABELS:
            raise rec.error("label", 'expected "True" or "False"', label)
        rows.add(
            rec, sentence=rec.text("sentence"), label=_RAW_LABELS[label],
            left_url=rec.text("left_url", required=False), right_url=rec.text("right_url", required=False),
            writer=_opt_text(rec, "writer"), synset=rec.text("synset", required=False),
            query=rec.text("query", required=False),
        )
    return _finish(rows, report, path, split, "raw"), report


def _opt_text(rec: Record, field: str) -> str | None:
    """Optional id-like field that upstream writes as a string (some releases as a number)."""
    value = rec.data.get(field)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise rec.error(field, "expected a string", value)


def parse_nlvr2_lxmert(path: Path, *, split: str | None = None) -> tuple[pa.Table, ParseReport]:
    """LXMERT preprocessed NLVR2 list ``{identifier, img0, img1, label: 0|1, sent, uid}`` -> NLVR2 table."""
    path = Path(path)
    records = expect_list(path, load_json(path), "the NLVR2 preprocessed file")
    report = ParseReport(DATASET, split or "", sources=[str(path)])
    rows = _Rows(path)
    for i, raw in enumerate(records):
        report.records_read += 1
        rec = Record(raw, path, index_ref(i))
        label = rec.integer("label")
        if label not in (0, 1):
            raise rec.error("label", "expected 0 or 1", label)
        rows.add(rec, sentence=rec.text("sent"), label=bool(label), uid=rec.text("uid", required=False))
        for side in ("img0", "img1"):
            given = rec.text(side)
            if given != rows.last[side]:
                raise rec.error(side, f"does not match the identifier (expected {rows.last[side]!r})", given)
    return _finish(rows, report, path, split, "lxmert"), report

