"""The scale benchmark's generator writes upstream files that prepare parses into the spec's row counts
(scaled: the real sizes of docs/data.md x the fraction, rounded), with every referenced media id listed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipelines.prepare import prepare_dataset

_SPEC = importlib.util.spec_from_file_location(
    "scale_data", Path(__file__).resolve().parents[2] / "bench" / "scale_data.py")
scale_data = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scale_data)


def test_generated_files_prepare_to_the_scaled_counts(tmp_path):
    info = scale_data.generate(tmp_path, 0.002)
    assert scale_data.generate(tmp_path, 0.002) == info  # reused, not rewritten
    # 943,000 / 132,062 / 12,578 GQA questions x 0.002
    assert prepare_dataset("gqa", tmp_path).tables == {"train": 1886, "valid": 264, "testdev": 25}
    # 443,757 / 214,354 VQA questions x 0.002; every image is in the Karpathy file, so the splits hold them all
    vqa = prepare_dataset("vqa", tmp_path).tables
    assert (vqa["train2014"], vqa["val2014"]) == (888, 429)
    assert vqa["karpathy_train"] + vqa["karpathy_val"] + vqa["karpathy_test"] == 888 + 429
    assert prepare_dataset("nlvr2", tmp_path).tables == {"train": 173, "dev": 14, "test1": 14}
    assert prepare_dataset("tvqa", tmp_path).tables == {"train": 244, "val": 31, "test_public": 15}
    images = set((tmp_path / "media_ids" / "images.txt").read_text().split())
    missing = (tmp_path / "tables" / "gqa" / "missing_media.txt").read_text().split()
    assert missing and set(missing) <= images  # no media are written: all referenced ids are reported missing
