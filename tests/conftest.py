"""Shared fixtures: tiny tokenizers and models, fully offline."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXTS = [
    "vqa: what color is the circle?", "gpa: is the square left of the circle?", "nlvr: there are two red shapes",
    "caption:", "red", "blue", "true", "false", "a red circle left of a blue square", "yes", "no", "2",
]


@pytest.fixture(scope="session")
def tokenizers():
    from vlpet.tokenization import train_tokenizer

    return {fam: train_tokenizer(TEXTS * 10, fam, vocab_size=300) for fam in ("bart", "t5")}


@pytest.fixture(autouse=True)
def _quiet_random_weights():
    from features.weights import RandomWeightsWarning as ClipRandomWeightsWarning
    from vlpet.backbones import RandomWeightsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        warnings.simplefilter("ignore", ClipRandomWeightsWarning)
        yield
