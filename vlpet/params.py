"""Parameter counting: trainable, total and percentage, as the paper reports them.

The denominator is every parameter of the final model (backbone + resized vocabulary + visual projector
+ PET modules), each counted once (tied embeddings are one tensor), as docs/method.md §3 recomputes the paper's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vlpet.config import PAPER_METHODS


@dataclass(frozen=True)
class ParamCount:
    backbone: str
    method: str
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "percent": round(self.percent, 2)}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) over the de-duplicated parameters of ``model``."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def method_param_counts(backbone: str = "bart-base", methods: tuple[str, ...] = PAPER_METHODS,
                        feat_dim: int = 2048) -> list[ParamCount]:
    """Counts for each method, built on the meta device from the architecture config (no weights, no RAM)."""
    import warnings

    from vlpet.backbones import RandomWeightsWarning
    from vlpet.build import build_model

    out = []
    for name in methods:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            model, _ = build_model(backbone, name, feat_dim=feat_dim, weights="random")  # counts: no weights needed
        trainable, total = count_parameters(model)
        out.append(ParamCount(backbone, name, trainable, total))
    return out
