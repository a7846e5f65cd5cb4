"""Unified annotation tables: upstream files (raw and VL-T5/LXMERT preprocessed) -> one Arrow schema per
task family, written as memory-mappable Arrow IPC files with provenance (dataset, split, sources + sha256).

Every parser returns ``(table, ParseReport)`` and raises ``TableParseError`` (file, record, field, value)
on bad input; unknown extra fields are ignored. See ``schemas`` for the column conventions.
"""

from pipelines.tables.arrow_io import attach_metadata, read_table, table_metadata, write_table
from pipelines.tables.captions import parse_coco_karpathy
from pipelines.tables.errors import TableParseError
from pipelines.tables.gqa import parse_gqa_balanced, parse_gqa_lxmert
from pipelines.tables.hashing import SourceDigest, digest_file
from pipelines.tables.karpathy_vqa import (
    KarpathyCountCheck,
    check_karpathy_counts,
    load_answer_vocab,
    rebuild_karpathy_vqa,
)
from pipelines.tables.media_index import DuplicateMediaIdError, build_media_index, media_id_of
from pipelines.tables.nlvr2 import image_ids, parse_nlvr2, parse_nlvr2_lxmert
from pipelines.tables.report import ParseReport
from pipelines.tables.schemas import (
    CAPTION_SCHEMA,
    MEDIA_INDEX_SCHEMA,
    NLVR2_SCHEMA,
    VIDEO_CAPTION_SCHEMA,
    VIDEO_QA_SCHEMA,
    VQA_SCHEMA,
)
from pipelines.tables.subtitles import SubtitleIndex, load_subtitles
from pipelines.tables.video_captions import parse_video_captions
from pipelines.tables.video_qa import fill_answer_idx, parse_tvqa_solution, parse_video_qa
from pipelines.tables.vlt5_json import vl_t5_vqa_records, write_vl_t5_vqa_json
from pipelines.tables.vqa import parse_vqa_lxmert, parse_vqa_official
from pipelines.tables.vqa_family import soft_score, soft_scores
from pipelines.tables.vqa_normalize import normalize_answer, process_digit_article, process_punctuation

__all__ = [
    "CAPTION_SCHEMA",
    "MEDIA_INDEX_SCHEMA",
    "NLVR2_SCHEMA",
    "VIDEO_CAPTION_SCHEMA",
    "VIDEO_QA_SCHEMA",
    "VQA_SCHEMA",
    "DuplicateMediaIdError",
    "KarpathyCountCheck",
    "ParseReport",
    "SourceDigest",
    "SubtitleIndex",
    "TableParseError",
    "attach_metadata",
    "build_media_index",
    "check_karpathy_counts",
    "digest_file",
    "fill_answer_idx",
    "image_ids",
    "load_answer_vocab",
    "load_subtitles",
    "media_id_of",
    "normalize_answer",
    "parse_coco_karpathy",
    "parse_gqa_balanced",
    "parse_gqa_lxmert",
    "parse_nlvr2",
    "parse_nlvr2_lxmert",
    "parse_tvqa_solution",
    "parse_video_captions",
    "parse_video_qa",
    "parse_vqa_lxmert",
    "parse_vqa_official",
    "process_digit_article",
    "process_punctuation",
    "read_table",
    "rebuild_karpathy_vqa",
    "soft_score",
    "soft_scores",
    "table_metadata",
    "vl_t5_vqa_records",
    "write_table",
    "write_vl_t5_vqa_json",
]
