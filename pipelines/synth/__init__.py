"""Synthetic mini-datasets in the exact upstream file formats and layouts.

No machine this project runs on can reach the dataset hosts, so the demo data and the test fixtures are
generated: coloured-shape images and moving-shape videos with questions, captions and statements that
follow from the pixels, written as the upstream archives and annotation files (COCO, VQA v2, GQA, NLVR2,
TVQA, TVC, How2QA, YC2C). ``generate(out_dir, scale, seed)`` writes them and returns a ``SynthManifest``.
"""

from pipelines.synth.ahash import average_hash
from pipelines.synth.config import SCALES, ScaleConfig
from pipelines.synth.generate import SOURCES, generate
from pipelines.synth.manifest import FileEntry, SynthManifest

__all__ = ["SCALES", "SOURCES", "FileEntry", "ScaleConfig", "SynthManifest", "average_hash", "generate"]
