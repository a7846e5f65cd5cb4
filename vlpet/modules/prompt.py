"""Prompt tuning with the reparameterisation MLP: Embedding(L, d) → Linear(d, m) → tanh → Linear(m, d)."""

from __future__ import annotations

import torch
from torch import nn


class PromptEncoder(nn.Module):
    def __init__(self, length: int, dim: int, mid_dim: int) -> None:
        super().__init__()
        self.length = length
        self.embedding = nn.Embedding(length, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mid_dim), nn.Tanh(), nn.Linear(mid_dim, dim))

    def forward(self, batch_size: int) -> torch.Tensor:
        """Prompt vectors (B, L, d) to prepend to the encoder input."""
        prompts = self.mlp(self.embedding.weight)
        return prompts.unsqueeze(0).expand(batch_size, -1, -1)
