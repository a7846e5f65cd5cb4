"""Bottleneck modifications ΔH: the VL-PET multi-head variants, the plain adapter, and the PHM adapter.

All of them map the module input X' (N×d) to a modification of the same shape, with no residual inside:
the caller decides whether it is added sequentially (H + ΔH) or in parallel (V + ΔV). Activation is
``gelu_new`` (the tanh approximation), as in the official code.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

MultiHeadVariant = Literal["down", "up", "down-up", "down-up-pair"]


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU (transformers' ``gelu_new``)."""
    return F.gelu(x, approximate="tanh")


class BottleneckAdapter(nn.Module):
    """ΔH = up(gelu_new(down(X))): one d→r→d bottleneck (the VL-Adapter / Houlsby adapter, VPA branch)."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(gelu_new(self.down(x)))

    def zero_init_up(self) -> None:
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class MultiHeadAdapter(nn.Module):
    """VL-PET's multi-head modular modification (docs/method.md §2), with N_h heads and total rank r.

    Heads are kept as separate ``nn.Linear`` modules, as the official code builds them (so per-head
    initialisation and parameter names match), but concatenated heads are applied as one matmul:
    concatenating linear maps of the same input is one linear map, which is also why the ``down``,
    ``up`` and ``down-up`` variants equal a single d→r→d adapter. Only ``down-up-pair`` (block-diagonal
    up-projection) is structurally different.
    """

    def __init__(self, dim: int, rank: int, num_heads: int = 4, variant: MultiHeadVariant = "down") -> None:
        super().__init__()
        if rank % num_heads:
            raise ValueError(f"adapter rank {rank} is not divisible by num_heads {num_heads}")
        if variant in ("up", "down-up", "down-up-pair") and dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.rank, self.num_heads, self.variant = dim, rank, num_heads, variant
        head_r, head_d = rank // num_heads, dim // num_heads
        if variant == "up":
            self.down = nn.ModuleList([nn.Linear(dim, rank)])
        else:
            self.down = nn.ModuleList([nn.Linear(dim, head_r) for _ in range(num_heads)])
        if variant == "down":
            self.up = nn.ModuleList([nn.Linear(rank, dim)])
        elif variant in ("up", "down-up"):
            self.up = nn.ModuleList([nn.Linear(rank, head_d) for _ in range(num_heads)])
        else:  # down-up-pair: head i maps its own r/N_h slice to its own d/N_h slice
            self.up = nn.ModuleList([nn.Linear(head_r, head_d) for _ in range(num_heads)])

    @staticmethod
    def _stacked(layers: nn.ModuleList) -> tuple[torch.Tensor, torch.Tensor]:
        if len(layers) == 1:
            return layers[0].weight, layers[0].bias
        return torch.cat([m.weight for m in layers], 0), torch.cat([m.bias for m in layers], 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_down, b_down = self._stacked(self.down)
        z = gelu_new(F.linear(x, w_down, b_down))
        if self.variant != "down-up-pair":
            w_up, b_up = self._stacked(self.up)
            return F.linear(z, w_up, b_up)
        z = z.unflatten(-1, (self.num_heads, self.rank // self.num_heads))
        w_up = torch.stack([m.weight for m in self.up])  # (N_h, d/N_h, r/N_h)
        b_up = torch.stack([m.bias for m in self.up])  # (N_h, d/N_h)
        out = torch.einsum("...hr,hdr->...hd", z, w_up) + b_up
        return out.flatten(-2)

    def zero_init_up(self) -> None:
        for m in self.up:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)


class PHMLinear(nn.Module):
    """Parameterised hypercomplex multiplication layer (Compacter): W = Σ_i A_i ⊗ B_i.

    A_i are n×n "rules" (one set per layer, ``shared_phm_rule=False``) and B_i are full
    (in/n)×(out/n) matrices (``factorized_phm=False``), as VL-Adapter's Compacter baseline configures it.
    """

    def __init__(self, in_features: int, out_features: int, phm_dim: int = 2, rule_init_std: float = 0.01) -> None:
        super().__init__()
        if in_features % phm_dim or out_features % phm_dim:
            raise ValueError(f"PHM sizes {in_features}->{out_features} are not divisible by phm_dim {phm_dim}")
        self.in_features, self.out_features, self.phm_dim = in_features, out_features, phm_dim
        self.phm_rule = nn.Parameter(torch.empty(phm_dim, phm_dim, phm_dim))
        self.W = nn.Parameter(torch.empty(phm_dim, in_features // phm_dim, out_features // phm_dim))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.phm_rule, std=rule_init_std)
        for i in range(phm_dim):
            nn.init.xavier_uniform_(self.W.data[i])

    def weight(self) -> torch.Tensor:
        """The (in, out) matrix Σ_i kron(rule_i, W_i)."""
        n = self.phm_dim
        a, b = self.phm_rule, self.W  # (n, n, n), (n, p, q)
        kron = torch.einsum("kij,kpq->ipjq", a, b)  # (n, p, n, q) -> block (i, j) is Σ_k a_kij * b_k
        return kron.reshape(n * b.shape[1], n * b.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight() + self.bias


class PHMAdapter(nn.Module):
    """Compacter's hypercomplex adapter: up(gelu_new(down(X))) with PHM layers."""

    def __init__(self, dim: int, bottleneck: int, phm_dim: int = 2) -> None:
        super().__init__()
        self.down = PHMLinear(dim, bottleneck, phm_dim)
        self.up = PHMLinear(bottleneck, dim, phm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(gelu_new(self.down(x)))

    def zero_init_up(self) -> None:
        nn.init.zeros_(self.up.W)
        nn.init.zeros_(self.up.bias)
