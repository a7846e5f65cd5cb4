"""Default split names from upstream file names, so callers rarely have to spell them."""

from __future__ import annotations

from pathlib import Path


def split_from_stem(path: Path, dataset: str) -> str:
    """``how2qa_val_release.jsonl`` -> ``val_release`` (VL-Adapter's split names); ``tvqa_val`` -> ``val``."""
    stem = Path(path).stem
    return stem[len(dataset) + 1:] if stem.startswith(dataset + "_") else stem
