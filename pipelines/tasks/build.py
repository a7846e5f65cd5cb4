"""Task tables: one unified table joined with one feature-store snapshot (DATA_SPEC §5, VLPET_SPEC §4).

Design: a task table holds the text fields a task needs plus the **media ids** of its feature rows, and
names the snapshot id in its schema metadata. Rows are resolved through ``SnapshotReader`` at load time (an
O(1) dict lookup, done once per item). Row indices were not stored because they are private to the store's
segment layout (segment file + row); media ids are stable, readable, and the pinned snapshot id makes the
join exact: the loader refuses a reader of another snapshot.

The table is written in Arrow IPC **stream** format, atomically: Hugging Face ``datasets.Dataset.from_file``
reads only the stream format (checked: it fails on IPC *file* format), and a memory-mapped stream read is
zero-copy too, so one file serves both the loader and ``datasets``.

Columns (one schema for every task, nulls where a task has no such field):
``example_id`` (question_id / identifier / image_id / qid / clip_id as text), ``media_ids`` (1 image, 2 for
NLVR2, 1 video), ``text`` (question / sentence), ``subs`` (subtitle lines stripped and space-joined), ``ts``
(timestamp text), ``choices``, ``targets`` (answers / "true"|"false" / captions / "a<idx>"), ``scores`` (soft
scores of ``targets`` for VQA/GQA), ``raw_answers`` (VQA: the 10 annotator answers the official metric scores against).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.store import FeatureStore
from pipelines.tables import read_table
from pipelines.tables.hashing import sha256_file
from vlpet.atomic import write_atomic, write_text_atomic

TASKS = ("vqa", "gqa", "nlvr2", "coco", "tvqa", "how2qa", "tvc", "yc2c")
VIDEO_TASKS = ("tvqa", "how2qa", "tvc", "yc2c")
TASK_TABLE_VERSION = "2"  # 2: raw_answers (VQA's 10 annotator answers, for the official metric)
_META = "vlpet_task."
_QA = ("qid", "question", "choices", "answer_idx", "ts", "subtitles", "media_id")
_CAP = ("clip_id", "ts", "captions", "subtitles", "media_id")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "vqa": ("question_id", "question", "answers", "media_id"),
    "gqa": ("question_id", "question", "answers", "media_id"),
    "nlvr2": ("identifier", "sentence", "label", "media_id0", "media_id1"),
    "coco": ("image_id", "captions", "media_id"),
    "tvqa": _QA, "how2qa": _QA, "tvc": _CAP, "yc2c": _CAP,
}

TASK_SCHEMA = pa.schema([
    pa.field("example_id", pa.string(), nullable=False),
    pa.field("media_ids", pa.list_(pa.string()), nullable=False),
    pa.field("text", pa.string()),
    pa.field("subs", pa.string()),
    pa.field("ts", pa.string()),
    pa.field("choices", pa.list_(pa.string())),
    pa.field("targets", pa.list_(pa.string()), nullable=False),
    pa.field("scores", pa.list_(pa.float32())),
    pa.field("raw_answers", pa.list_(pa.string())),
])


@dataclass
class BuildReport:
    """What a build kept and what it excluded (never silently): rows whose media lack usable features."""

    task: str
    split: str
    out_path: str
    snapshot_id: str
    source_sha256: str
    rows_in: int
    rows_out: int
    excluded: int = 0
    excluded_example_ids: list[str] = field(default_factory=list)
    missing_media: list[str] = field(default_factory=list)  # not in the snapshot at all
    quarantined_media: list[str] = field(default_factory=list)  # in the snapshot with status error

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _subs(lines: list[dict] | None) -> str | None:
    if lines is None:
        return None
    return " ".join(line["text"].strip() for line in lines)


def _row(task: str, rec: dict[str, Any], path: Path) -> dict[str, Any]:
    """One unified-table record → one task-table row (fields named by the task's schema family)."""
    try:
        if task in ("vqa", "gqa"):
            answers = rec["answers"]  # null = unlabelled (test) → scores null; [] = labelled, no answer in vocab
            return {"example_id": rec["question_id"], "media_ids": [rec["media_id"]], "text": rec["question"],
                    "targets": [a["answer"] for a in answers or []],
                    "scores": None if answers is None else [a["score"] for a in answers],
                    "raw_answers": rec.get("raw_answers")}
        if task == "nlvr2":
            return {"example_id": rec["identifier"], "media_ids": [rec["media_id0"], rec["media_id1"]],
                    "text": rec["sentence"], "targets": ["true" if rec["label"] else "false"]}
        if task == "coco":
            return {"example_id": rec["image_id"], "media_ids": [rec["media_id"]], "text": "",
                    "targets": list(rec["captions"])}
        if task in ("tvqa", "how2qa"):
            idx = rec["answer_idx"]
            return {"example_id": str(rec["qid"]), "media_ids": [rec["media_id"]], "text": rec["question"],
                    "subs": _subs(rec["subtitles"]), "ts": rec["ts"], "choices": list(rec["choices"]),
                    "targets": [] if idx is None else [f"a{idx}"]}
        if task in ("tvc", "yc2c"):
            ts = rec["ts"]
            return {"example_id": str(rec["clip_id"]), "media_ids": [rec["media_id"]],
                    "subs": _subs(rec["subtitles"]), "ts": None if ts is None else str(list(ts)),
                    "targets": list(rec["captions"])}
    except KeyError as exc:
        raise ValueError(f"{path}: task {task!r} needs column {exc.args[0]!r}, which the table lacks") from None
    raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")


def _check_store_shape(task: str, reader: Any, store_path: Path) -> None:
    spec = reader.spec
    if task in VIDEO_TASKS and not spec.ragged:
        raise ValueError(f"{store_path}: task {task!r} needs a ragged (T, F) video store, got shape {spec.shape}")
    if task not in VIDEO_TASKS and (spec.ragged or len(spec.shape) != 2):
        raise ValueError(f"{store_path}: task {task!r} needs a fixed (N, F) image store, got shape {spec.shape}"
                         f"{' (ragged)' if spec.ragged else ''}")


def write_stream_atomic(table: pa.Table, path: Path) -> Path:
    """Arrow IPC stream file written to a temp name in the same directory, fsync'ed, then ``os.replace``d."""

    def write(handle: Any) -> None:
        with pa.ipc.new_stream(pa.PythonFile(handle, mode="w"), table.schema) as writer:
            writer.write_table(table)

    return write_atomic(path, write)


def build_task_table(task: str, split: str, table_path: Path | str, store_path: Path | str, out_path: Path | str,
                     snapshot: str | None = None) -> BuildReport:
    """Join ``table_path`` (a unified table) with a snapshot of ``store_path`` into the task table ``out_path``.

    ``snapshot`` None means the store's latest. Records any of whose media are absent from the snapshot or
    quarantined there are excluded and listed in the report (and counted in the table's metadata).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")
    table_path, store_path, out_path = Path(table_path), Path(store_path), Path(out_path)
    source = read_table(table_path)
    lacking = [c for c in REQUIRED_COLUMNS[task] if c not in source.column_names]
    if lacking:
        raise ValueError(f"{table_path}: task {task!r} needs columns {lacking}, which the table lacks "
                         f"(it has {source.column_names})")
    reader = FeatureStore.open_reader(store_path, snapshot)
    _check_store_shape(task, reader, store_path)
    known = set(reader.all_media_ids)
    reader.check_segments()  # a corrupt store stops the build here (CorruptionError naming the segment)
    rows: list[dict[str, Any]] = []
    excluded: list[str] = []
    missing: set[str] = set()
    quarantined: set[str] = set()
    for rec in source.to_pylist():
        row = _row(task, rec, table_path)
        bad = [m for m in row["media_ids"] if m not in reader]
        if bad:
            excluded.append(row["example_id"])
            for m in bad:
                (quarantined if m in known else missing).add(m)
            continue
        rows.append(row)
    columns = {f.name: [r.get(f.name) for r in rows] for f in TASK_SCHEMA}
    out = pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in TASK_SCHEMA], schema=TASK_SCHEMA)
    report = BuildReport(task=task, split=split, out_path=str(out_path), snapshot_id=reader.snapshot_id,
                         source_sha256=sha256_file(table_path), rows_in=source.num_rows, rows_out=out.num_rows,
                         excluded=len(excluded), excluded_example_ids=excluded, missing_media=sorted(missing),
                         quarantined_media=sorted(quarantined))
    meta = {"task": task, "split": split, "version": TASK_TABLE_VERSION, "snapshot_id": reader.snapshot_id,
            "store_path": str(store_path.resolve()), "source_table": str(table_path.resolve()),
            "source_sha256": report.source_sha256, "rows_in": str(report.rows_in), "excluded": str(report.excluded)}
    out = out.replace_schema_metadata({f"{_META}{k}".encode(): v.encode() for k, v in meta.items()})
    write_stream_atomic(out, out_path)
    return report


def task_table_metadata(schema: pa.Schema) -> dict[str, str]:
    """The ``vlpet_task.*`` metadata of a task table (task, split, snapshot_id, source_sha256, ...)."""
    return {k.decode()[len(_META):]: v.decode() for k, v in (schema.metadata or {}).items()
            if k.decode().startswith(_META)}


def open_task_table(path: Path | str) -> pa.Table:
    """Memory-map a task table (zero-copy); a clear error names the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such task table")
    try:
        table = pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: not an Arrow IPC stream task table ({exc})") from None
    if "task" not in task_table_metadata(table.schema):
        raise ValueError(f"{path}: Arrow table without vlpet_task.* metadata; build it with build_task_table")
    return table


def write_report(report: BuildReport, path: Path | str) -> None:
    """The build report as JSON, atomically (next to the table, for humans and flows)."""
    write_text_atomic(path, json.dumps(report.as_dict(), indent=2, sort_keys=True))


def media_ids_of(tables: Sequence[Path | str],
                 column_names: Sequence[str] = ("media_id", "media_id0", "media_id1")) -> list[str]:
    """Every media id referenced by unified tables (to plan which features a build will need)."""
    ids: set[str] = set()
    for p in tables:
        t = read_table(p)
        for c in column_names:
            if c in t.column_names:
                ids.update(t.column(c).to_pylist())
    return sorted(ids)


def build_task(root: Path | str, task: str, split: str, store_path: Path | str, snapshot: str | None = None,
               dataset: str | None = None) -> BuildReport:
    """``build_task_table`` on the standard layout: ``<root>/tables/<dataset>/<split>.arrow`` →
    ``<root>/tasks/<task>/<split>.arrow``, with the report beside it as ``<split>.report.json``.

    ``dataset`` defaults to the task name (every task's unified tables live under its own name).
    """
    root = Path(root)
    table = root / "tables" / (dataset or task) / f"{split}.arrow"
    out = root / "tasks" / task / f"{split}.arrow"
    report = build_task_table(task, split, table, store_path, out, snapshot)
    write_report(report, out.with_suffix(".report.json"))
    return report
