"""One explicit Arrow schema per task family, so every parser of a family yields identical columns.

Id conventions (chosen so rows join to feature files by name, the VL-T5 convention):
- VQA-like ``question_id`` is a **string** for every dataset: VQA v2 ids are ints in the raw files
  (``458752000``) and are stored as their decimal text (``"458752000"``); GQA ids are already strings
  with meaningful leading zeros (``"07333408"``), which an int column would destroy.
- ``image_id`` is the feature-file stem: VQA ``COCO_train2014_000000458752``, GQA ``2375429`` / ``n161313``,
  NLVR2 ``dev-850-0-img0``, captions ``COCO_val2014_000000391895``.
- Nullable columns mean "not in this source" (test splits have no answers; GQA has no raw answers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

ANSWER = pa.struct([pa.field("answer", pa.string(), nullable=False), pa.field("score", pa.float32(), nullable=False)])
SUBTITLE_LINE = pa.struct(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("start", pa.float64(), nullable=False),
        pa.field("end", pa.float64(), nullable=False),
    ]
)
SUBTITLES = pa.list_(SUBTITLE_LINE)

VQA_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        # Soft scores per normalised answer, sorted by (-score, answer); null = unlabelled (test).
        pa.field("answers", pa.list_(ANSWER)),
        pa.field("answer_type", pa.string()),  # VQA yes/no|number|other; GQA types.structural
        pa.field("question_type", pa.string()),  # VQA e.g. "what is this"; GQA types.semantic
        pa.field("raw_answers", pa.list_(pa.string())),  # VQA: the 10 annotator answers, verbatim
        pa.field("is_topk_optimal", pa.bool_()),  # Karpathy VQA only: best answer is in the vocabulary
    ]
)

NLVR2_SCHEMA = pa.schema(
    [
        pa.field("identifier", pa.string(), nullable=False),  # split-set-pair-sentence
        pa.field("split", pa.string(), nullable=False),  # the identifier's split (train|dev|test1|test2)
        pa.field("img0", pa.string(), nullable=False),  # split-set-pair-img0
        pa.field("img1", pa.string(), nullable=False),
        pa.field("sentence", pa.string(), nullable=False),
        pa.field("label", pa.bool_(), nullable=False),
        pa.field("left_url", pa.string()),
        pa.field("right_url", pa.string()),
        pa.field("uid", pa.string()),  # LXMERT nlvr2_<split>_<line index>
        pa.field("writer", pa.string()),
        pa.field("synset", pa.string()),
        pa.field("query", pa.string()),
    ]
)

CAPTION_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),  # file name without extension
        pa.field("cocoid", pa.int64(), nullable=False),
        pa.field("filepath", pa.string(), nullable=False),  # train2014 | val2014
        pa.field("filename", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # as in the file: train|restval|val|test
        pa.field("karpathy_split", pa.string(), nullable=False),  # restval -> train
        pa.field("captions", pa.list_(pa.string()), nullable=False),  # raw sentences, stripped
        pa.field("sentids", pa.list_(pa.int64()), nullable=False),
    ]
)

VIDEO_QA_SCHEMA = pa.schema(
    [
        pa.field("qid", pa.int64(), nullable=False),
        pa.field("vid_name", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("choices", pa.list_(pa.string()), nullable=False),  # TVQA a0..a4, How2QA a0..a3
        pa.field("answer_idx", pa.int64()),  # null on test files
        pa.field("ts", pa.string(), nullable=False),  # as given, e.g. "20.16-25.12"
        pa.field("show_name", pa.string()),
        pa.field("subtitles", SUBTITLES),  # null when no subtitle file was joined
        pa.field("split", pa.string(), nullable=False),
    ]
)

VIDEO_CAPTION_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.int64(), nullable=False),
        pa.field("vid_name", pa.string(), nullable=False),
        pa.field("ts", pa.list_(pa.float64())),  # TVC [start, end]; null for YC2C
        pa.field("duration", pa.float64()),
        pa.field("captions", pa.list_(pa.string()), nullable=False),  # descs[].desc; [] on test files
        pa.field("desc_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("desc_types", pa.list_(pa.string()), nullable=False),  # TVC v|t|vt; null items for YC2C
        pa.field("subtitles", SUBTITLES),
        pa.field("split", pa.string(), nullable=False),
    ]
)

MEDIA_INDEX_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),  # file name without extension
        pa.field("rel_path", pa.string(), nullable=False),  # POSIX, relative to the indexed root
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # image | video
    ]
)


def empty_columns(schema: pa.Schema) -> dict[str, list[Any]]:
    """One Python list per column, filled row by row by a parser, then turned into a table."""
    return {name: [] for name in schema.names}


def build_table(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """Columns (Python lists) to a table of exactly ``schema``; a null in a non-null column is a bug, so it fails."""
    arrays = []
    for field in schema:
        array = pa.array(columns[field.name], type=field.type)
        if not field.nullable and array.null_count:
            raise ValueError(f"column {field.name!r} is declared non-null but has {array.null_count} nulls")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


BATCH_ROWS = 65_536


class BatchedColumns:
    """Rows appended as Python values, turned into an Arrow record batch every ``batch_rows`` rows.

    Parsers of the large files (GQA 1.07M questions, VQA 658k) keep at most one batch as Python objects;
    what accumulates is Arrow data (a few bytes per value, not a Python object each).
    """

    def __init__(self, schema: pa.Schema, batch_rows: int = BATCH_ROWS) -> None:
        self.schema = schema
        self.batch_rows = batch_rows
        self.columns = empty_columns(schema)
        self.batches: list[pa.RecordBatch] = []
        self.rows = 0

    def __len__(self) -> int:
        return self.rows

    def append(self, row: Mapping[str, Any]) -> None:
        for name, values in self.columns.items():
            values.append(row.get(name))
        self.rows += 1
        if len(self.columns[self.schema.names[0]]) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.columns[self.schema.names[0]]:
            self.batches.append(build_table(self.columns, self.schema).to_batches()[0])
            self.columns = empty_columns(self.schema)

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)
