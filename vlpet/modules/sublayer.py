"""H' = s · G ⊙ (H + ΔH): the module VL-PET inserts after every encoder sub-layer (docs/method.md §1).

With ``gate=None`` and ``scale=1`` it is a plain sequential adapter (H + ΔH), which is how the VL-Adapter
and Compacter baselines reuse it; with ``delta=None`` it is a gate alone.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedModification(nn.Module):
    def __init__(self, delta: nn.Module | None, gate: nn.Module | None, scale: float = 1.0) -> None:
        super().__init__()
        self.delta = delta
        self.gate = gate
        self.scale = float(scale)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``x``: the sub-layer input X; ``h``: the frozen sub-layer output H. Returns H'."""
        out = h + self.delta(h) if self.delta is not None else h
        if self.gate is not None:
            out = self.gate(x, out) * out
        if self.scale != 1.0:
            out = self.scale * out
        return out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
