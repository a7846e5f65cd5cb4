"""Scale presets for the synthetic mini-datasets.

Two presets only, because they serve two different consumers: ``tiny`` is the test fixture (it must
generate in a few seconds on a 2-core CI runner, so every split has a couple of dozen images and a
handful of videos), ``demo`` is the embedded demo data (large enough that a small model trained for a
few minutes beats the majority baseline, small enough that CPU feature extraction at ~0.1 s/image
stays near two minutes: at most ~1,500 images and ~150 videos in total).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scale = Literal["tiny", "demo"]


@dataclass(frozen=True)
class ScaleConfig:
    """How much of each source to write. Counts are per split; sizes are (width, height) in pixels."""

    name: str
    image_size: tuple[int, int]
    coco_train2014_images: int
    coco_val2014_images_per_split: int  # val2014 is cut into Karpathy restval / val / test of this size each
    vqa_questions_per_image: int
    gqa_images: dict[str, int]  # train / val / testdev
    gqa_questions_per_image: int
    nlvr2_sets: dict[str, int]  # train / dev / test1; a set is 4 image pairs (8 images)
    nlvr2_sentences_per_set: int  # each labelled on all 4 pairs (upstream sets have 2; more is free: no new images)
    video_size: tuple[int, int]
    video_seconds: tuple[float, float]  # duration range of ordinary clips
    tv_videos: dict[str, int]  # train / val / test (test is split into public and challenge halves)
    tvqa_questions_per_video: int
    tvc_moments_per_video: int
    how2_videos: dict[str, int]  # train / val / test_public
    how2qa_questions_per_video: int
    yc2_segments: dict[str, int]  # train / val / test (YC2C clips = YouCook2 segments)


SCALES: dict[str, ScaleConfig] = {
    "tiny": ScaleConfig(
        name="tiny",
        image_size=(160, 120),
        coco_train2014_images=24,
        coco_val2014_images_per_split=8,
        vqa_questions_per_image=3,
        gqa_images={"train": 24, "val": 12, "testdev": 12},
        gqa_questions_per_image=4,
        nlvr2_sets={"train": 4, "dev": 3, "test1": 3},
        nlvr2_sentences_per_set=2,
        video_size=(96, 72),
        video_seconds=(2.0, 8.0),
        tv_videos={"train": 4, "val": 3, "test": 3},
        tvqa_questions_per_video=4,
        tvc_moments_per_video=1,
        how2_videos={"train": 4, "val": 2, "test_public": 2},
        how2qa_questions_per_video=4,
        yc2_segments={"train": 4, "val": 2, "test": 2},
    ),
    "demo": ScaleConfig(
        name="demo",
        image_size=(320, 240),
        coco_train2014_images=360,
        coco_val2014_images_per_split=80,
        vqa_questions_per_image=3,
        gqa_images={"train": 240, "val": 60, "testdev": 60},
        gqa_questions_per_image=4,
        nlvr2_sets={"train": 36, "dev": 4, "test1": 8},
        nlvr2_sentences_per_set=8,
        video_size=(160, 120),
        video_seconds=(3.0, 12.0),
        tv_videos={"train": 36, "val": 7, "test": 7},
        tvqa_questions_per_video=6,
        tvc_moments_per_video=2,
        how2_videos={"train": 24, "val": 6, "test_public": 6},
        how2qa_questions_per_video=6,
        yc2_segments={"train": 36, "val": 9, "test": 9},
    ),
}


def get_scale(scale: str) -> ScaleConfig:
    """The preset called ``scale``; a clear error for anything else (the CLI passes user text here)."""
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown synth scale {scale!r}; choose one of {', '.join(SCALES)}") from None
