"""COCO captions with the Karpathy split (``dataset_coco.json``) to the caption table, one row per image.

``image_id`` is the file name without extension (the VL-T5 feature-file stem); captions are the ``raw``
sentences stripped, as VL-T5's caption loader uses them as targets and references. ``karpathy_split``
merges restval into train, as the loader does (113,287 train images).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pyarrow as pa

from pipelines.tables.arrow_io import attach_metadata
from pipelines.tables.errors import TableParseError, index_ref
from pipelines.tables.hashing import digest_file
from pipelines.tables.readers import Record, iter_json_items, json_top_level
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import CAPTION_SCHEMA, BatchedColumns

DATASET = "coco_karpathy"
FAMILY = "caption"
KARPATHY_SPLIT = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def parse_coco_karpathy(path: Path) -> tuple[pa.Table, ParseReport]:
    """``dataset_coco.json`` -> caption table with every image of every split (metadata split ``all``)."""
    path = Path(path)
    top = json_top_level(path, "the Karpathy split file", ("images",))
    if "images" not in top:
        raise TableParseError(path, "missing top-level field 'images' (is this dataset_coco.json?)")
    if top["images"] != "list":
        raise TableParseError(path, f"expected 'images' to be a JSON list, got {top['images']}")
    report = ParseReport(DATASET, "all", sources=[str(path)])
    cols = BatchedColumns(CAPTION_SCHEMA)
    seen: dict[str, str] = {}
    for i, raw in enumerate(iter_json_items(path, "images.item")):  # streamed: 123k images, 616k captions
        report.records_read += 1
        rec = Record(raw, path, f"images {index_ref(i)}")
        filename = rec.text("filename")
        image_id = PurePosixPath(filename).stem
        if image_id in seen:
            raise rec.error("filename", f"duplicate image (first at {seen[image_id]})", filename)
        seen[image_id] = rec.ref
        split = rec.text("split")
        if split not in KARPATHY_SPLIT:
            raise rec.error("split", f"expected one of {sorted(KARPATHY_SPLIT)}", split)
        captions, sentids = [], []
        for j, sentence in enumerate(rec.array("sentences")):
            sub = rec.sub(sentence, f"sentences[{j}]")
            captions.append(sub.text("raw").strip())
            sentids.append(sub.integer("sentid"))
        cols.append({"image_id": image_id, "cocoid": rec.integer("cocoid"), "filepath": rec.text("filepath"),
                     "filename": filename, "split": split, "karpathy_split": KARPATHY_SPLIT[split],
                     "captions": captions, "sentids": sentids})
        report.note(f"images in {split}")
    table = cols.table()
    report.records_written = table.num_rows
    table = attach_metadata(table, family=FAMILY, dataset=DATASET, split="all", sources=[digest_file(path)])
    return table, report
