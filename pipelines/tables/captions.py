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
from pipelines.tables.readers import Record, expect_dict, expect_list, load_json
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import CAPTION_SCHEMA, build_table, empty_columns

DATASET = "coco_karpathy"
FAMILY = "caption"
KARPATHY_SPLIT = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def parse_coco_karpathy(path: Path) -> tuple[pa.Table, ParseReport]:
    """``dataset_coco.json`` -> caption table with every image of every split (metadata split ``all``)."""
    path = Path(path)
    document = expect_dict(path, load_json(path), "the Karpathy split file")
    if "images" not in document:
        raise TableParseError(path, "missing top-level field 'images' (is this dataset_coco.json?)")
    images = expect_list(path, document["images"], "'images'")
    report = ParseReport(DATASET, "all", sources=[str(path)])
    cols = empty_columns(CAPTION_SCHEMA)
    seen: dict[str, str] = {}
    for i, raw in enumerate(images):
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
        cols["image_id"].append(image_id)
        cols["cocoid"].append(rec.integer("cocoid"))
        cols["filepath"].append(rec.text("filepath"))
        cols["filename"].append(filename)
        cols["split"].append(split)
        cols["karpathy_split"].append(KARPATHY_SPLIT[split])
        cols["captions"].append(captions)
        cols["sentids"].append(sentids)
        report.note(f"images in {split}")
    table = build_table(cols, CAPTION_SCHEMA)
    report.records_written = table.num_rows
    table = attach_metadata(table, family=FAMILY, dataset=DATASET, split="all", sources=[digest_file(path)])
    return table, report
