"""The four granularity-controlled gates G (docs/method.md §1), exactly as the official code computes them.

Inputs: ``x`` is the sub-layer input X (BART: the layer / post-attention-LN state; T5: the raw residual
stream before the pre-LN) and ``h`` is the already-modified output H + ΔH. Every gate returns a tensor
that broadcasts against ``h`` (B, N, d).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vlpet.modules.adapters import gelu_new

Granularity = Literal["large", "middlex", "middley", "small"]


class LargeGate(nn.Module):
    """G = σ(W_up · gelu_new(W_down · X + b) + b'): one value per token and channel (N×d)."""

    def __init__(self, dim: int, gate_dim: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, gate_dim)
        self.up = nn.Linear(gate_dim, dim)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.up(gelu_new(self.down(x))))

    def zero_init(self) -> None:
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class MiddleXGate(nn.Module):
    """G = σ(w · (X + H + ΔH) + b): one scalar per token, shared over channels (N×1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(x + h))

    def zero_init(self) -> None:
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)


class MiddleYGate(nn.Module):
    """G = 1 + z: one value per channel, shared over tokens (1×d). No sigmoid, as in the code."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.z

    def zero_init(self) -> None:
        nn.init.zeros_(self.z)


class SmallGate(nn.Module):
    """G = mean_N σ(w · [X ; H + ΔH] + b): one scalar per sample (1×1).

    The mean runs over every position, padding and visual tokens included, as in the official code.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(torch.cat([x, h], dim=-1))).mean(dim=-2, keepdim=True)

    def zero_init(self) -> None:
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)


def make_gate(granularity: Granularity, dim: int, gate_dim: int | None = None) -> nn.Module:
    """Build the gate for a granularity name; ``gate_dim`` is only used (and required) by ``large``."""
    if granularity == "large":
        if not gate_dim:
            raise ValueError("the large gate needs gate_dim (the official scripts use 96 for BART, 192 for T5)")
        return LargeGate(dim, gate_dim)
    if granularity == "middlex":
        return MiddleXGate(dim)
    if granularity == "middley":
        return MiddleYGate(dim)
    if granularity == "small":
        return SmallGate(dim)
    raise ValueError(f"unknown gate granularity {granularity!r}; expected large, middlex, middley or small")
