"""Task tables: one unified table joined with one feature-store snapshot (docs/data.md §5, docs/method.md §4).

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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.media import hash_file
from features.store import FeatureStore
from pipelines.tables import read_table
from vlpet.atomic import write_atomic, write_text_atomic
from vlpet.catalog import CATALOG, task_spec

TASKS = tuple(CATALOG)  # the catalogue's tasks (vlpet.catalog), under the old name
TASK_TABLE_VERSION = "2"  # 2: raw_answers (VQA's 10 annotator answers, for the official metric)
_META = "vlpet_task."
_QA = ("qid", "question", "choices", "answer_idx", "ts", "subtitles", "media_id")
_CAP = ("clip_id", "ts", "captions", "subtitles", "media_id")
# The unified-table columns each parser (a catalogue entry's ``row`` kind) reads; the first names the example.
ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "vqa": ("question_id", "question", "answers", "media_id"),
    "nlvr2": ("identifier", "sentence", "label", "media_id0", "media_id1"),
    "caption": ("image_id", "captions", "media_id"),
    "video_qa": _QA, "video_caption": _CAP,
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


# Task columns are computed with Arrow compute on record batches of the unified table, never as Python rows:
# a row dict per question made a full VQA build peak at ~2.8 GB. Only TVC's ``ts`` text ("[35.73, 40.9]",
# Python's float repr) goes through Python, one batch at a time.
BATCH_ROWS = 65_536


def _lists(lengths: np.ndarray, values: pa.Array, mask: pa.Array | None = None) -> pa.ListArray:
    """A list array from per-row lengths and the concatenated values (``mask``: rows that are null)."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


def _one_each(values: pa.Array) -> pa.ListArray:
    return _lists(np.ones(len(values), np.int64), values)


def _lengths(lists: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)


def _subs(subtitles: pa.Array) -> pa.Array:
    """Subtitle lines stripped and space-joined per row (null stays null: no subtitle file was joined)."""
    text = pc.utf8_trim_whitespace(pc.list_flatten(subtitles).field("text"))
    return pc.binary_join(_lists(_lengths(subtitles), text, mask=subtitles.is_null()), " ")


def _text(values: pa.Array) -> pa.Array:
    return pc.cast(values, pa.string())


def _vqa_columns(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    col = batch.column
    answers = col("answers")  # null = unlabelled (test) -> scores null; [] = labelled, no answer in vocab
    flat = pc.list_flatten(answers)
    lengths = _lengths(answers)
    out = {"example_id": col("question_id"), "media_ids": _one_each(col("media_id")), "text": col("question"),
           "targets": _lists(lengths, flat.field("answer")),
           "scores": _lists(lengths, flat.field("score"), mask=answers.is_null())}
    if "raw_answers" in batch.schema.names:
        out["raw_answers"] = col("raw_answers")
    return out


def _nlvr2_columns(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    col, n = batch.column, batch.num_rows
    both = pa.concat_arrays([col("media_id0"), col("media_id1")])
    order = np.stack([np.arange(n), np.arange(n) + n], axis=1).reshape(-1)
    return {"example_id": col("identifier"), "text": col("sentence"),
            "media_ids": _lists(np.full(n, 2), both.take(pa.array(order))),
            "targets": _one_each(pc.if_else(col("label"), "true", "false"))}


def _caption_columns(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    col = batch.column
    return {"example_id": col("image_id"), "media_ids": _one_each(col("media_id")),
            "text": pa.array([""] * batch.num_rows, pa.string()), "targets": col("captions")}


def _video_qa_columns(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    col = batch.column
    idx = col("answer_idx")
    labels = pa.array([f"a{i}" for i in pc.drop_null(idx).to_pylist()], pa.string())
    return {"example_id": _text(col("qid")), "media_ids": _one_each(col("media_id")), "text": col("question"),
            "subs": _subs(col("subtitles")), "ts": col("ts"), "choices": col("choices"),
            "targets": _lists(idx.is_valid().to_numpy(zero_copy_only=False).astype(np.int64), labels)}


def _video_caption_columns(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    col = batch.column
    ts = pa.array([None if t is None else str(t) for t in col("ts").to_pylist()], pa.string())
    return {"example_id": _text(col("clip_id")), "media_ids": _one_each(col("media_id")),
            "subs": _subs(col("subtitles")), "ts": ts, "targets": col("captions")}


# The parsers: one batch of a unified table -> the task table's columns (the ones a task lacks are null), per
# catalogue ``row`` kind.
ROW_PARSERS: dict[str, Callable[[pa.RecordBatch], dict[str, pa.Array]]] = {
    "vqa": _vqa_columns, "nlvr2": _nlvr2_columns, "caption": _caption_columns, "video_qa": _video_qa_columns,
    "video_caption": _video_caption_columns,
}


def _task_batch(task: str, batch: pa.RecordBatch) -> pa.RecordBatch:
    columns = ROW_PARSERS[task_spec(task).row](batch)
    arrays = []
    for f in TASK_SCHEMA:
        value = columns.get(f.name)
        arrays.append(pa.nulls(batch.num_rows, f.type) if value is None else pc.cast(value, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=TASK_SCHEMA)


def _check_store_shape(task: str, reader: Any, store_path: Path) -> None:
    spec = reader.spec
    video = task_spec(task).visual == "video"
    if video and not spec.ragged:
        raise ValueError(f"{store_path}: task {task!r} needs a ragged (T, F) video store, got shape {spec.shape}")
    if not video and (spec.ragged or len(spec.shape) != 2):
        raise ValueError(f"{store_path}: task {task!r} needs a fixed (N, F) image store, got shape {spec.shape}"
                         f"{' (ragged)' if spec.ragged else ''}")


def write_stream_atomic(table: pa.Table | Iterable[pa.RecordBatch], path: Path,
                        schema: pa.Schema | None = None) -> Path:
    """Arrow IPC stream file written to a temp name in the same directory, fsync'ed, then ``os.replace``d.

    ``table`` may be record batches (written as they come, with ``schema``), so a build holds one batch.
    """
    if isinstance(table, pa.Table):
        schema, batches = table.schema, table.to_batches()
    else:
        batches = table
        if schema is None:
            raise ValueError("write_stream_atomic: record batches need a schema")

    def write(handle: Any) -> None:
        with pa.ipc.new_stream(pa.PythonFile(handle, mode="w"), schema) as writer:
            for batch in batches:
                writer.write_batch(batch.replace_schema_metadata(schema.metadata))

    return write_atomic(path, write)


def build_task_table(task: str, split: str, table_path: Path | str, store_path: Path | str, out_path: Path | str,
                     snapshot: str | None = None) -> BuildReport:
    """Join ``table_path`` (a unified table) with a snapshot of ``store_path`` into the task table ``out_path``.

    ``snapshot`` None means the store's latest. Records any of whose media are absent from the snapshot or
    quarantined there are excluded and listed in the report (and counted in the table's metadata).
    """
    columns = ROW_COLUMNS[task_spec(task).row]  # a clear error for an unknown task, before anything is read
    table_path, store_path, out_path = Path(table_path), Path(store_path), Path(out_path)
    source = read_table(table_path)
    lacking = [c for c in columns if c not in source.column_names]
    if lacking:
        raise ValueError(f"{table_path}: task {task!r} needs columns {lacking}, which the table lacks "
                         f"(it has {source.column_names})")
    reader = FeatureStore.open_reader(store_path, snapshot)
    _check_store_shape(task, reader, store_path)
    reader.check_segments()  # a corrupt store stops the build here (CorruptionError naming the segment)
    media_columns = [c for c in columns if c.startswith("media_id")]
    usable = pa.array(reader.media_ids, pa.string())
    ok = np.ones(source.num_rows, bool)
    bad_ids: set[str] = set()
    for name in media_columns:
        column = source.column(name)
        good = pc.fill_null(pc.is_in(column, value_set=usable), False).to_numpy(zero_copy_only=False)
        ok &= good
        bad_ids.update(pc.unique(column.filter(pa.array(~good))).to_pylist())
    known = bad_ids & set(reader.all_media_ids) if bad_ids else set()
    quarantined, missing = known, bad_ids - known
    excluded = _text(source.column(columns[0]).filter(pa.array(~ok))).to_pylist()
    kept = source if ok.all() else source.filter(pa.array(ok))
    report = BuildReport(task=task, split=split, out_path=str(out_path), snapshot_id=reader.snapshot_id,
                         source_sha256=hash_file(table_path), rows_in=source.num_rows, rows_out=kept.num_rows,
                         excluded=len(excluded), excluded_example_ids=excluded, missing_media=sorted(missing),
                         quarantined_media=sorted(quarantined))
    meta = {"task": task, "split": split, "version": TASK_TABLE_VERSION, "snapshot_id": reader.snapshot_id,
            "store_path": str(store_path.resolve()), "source_table": str(table_path.resolve()),
            "source_sha256": report.source_sha256, "rows_in": str(report.rows_in), "excluded": str(report.excluded)}
    schema = TASK_SCHEMA.with_metadata({f"{_META}{k}".encode(): v.encode() for k, v in meta.items()})
    batches = (_task_batch(task, b) for b in kept.to_batches(max_chunksize=BATCH_ROWS))
    write_stream_atomic(batches, out_path, schema)
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


def build_task(root: Path | str, task: str, split: str, store_path: Path | str, snapshot: str | None = None,
               dataset: str | None = None) -> BuildReport:
    """``build_task_table`` on the standard layout: ``<root>/tables/<dataset>/<split>.arrow`` →
    ``<root>/tasks/<task>/<split>.arrow``, with the report beside it as ``<split>.report.json``.

    ``dataset`` defaults to the task's catalogue ``dataset``.
    """
    root = Path(root)
    table = root / "tables" / (dataset or task_spec(task).dataset) / f"{split}.arrow"
    out = root / "tasks" / task / f"{split}.arrow"
    report = build_task_table(task, split, table, store_path, out, snapshot)
    write_report(report, out.with_suffix(".report.json"))
    return report
