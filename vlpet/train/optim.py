"""Optimizer and schedule exactly as the official VL-T5/VL-PET trainer builds them (docs/method.md §5).

Quirk kept on purpose: the no-decay group is chosen by *name substring* ``"bias"`` or ``"LayerNorm.weight"``.
HF BART/T5 name their norms ``*_layer_norm``/``layernorm_embedding``/``layer_norm``, never ``LayerNorm``, so
in practice only biases escape weight decay and every LN weight is decayed, as in the paper's runs.

``torch.optim.AdamW`` replaces the removed ``transformers.AdamW`` (same maths with ``correct_bias=True``,
except that torch applies the decoupled decay before the Adam step and HF after it: the two differ by
O(lr²·wd) per step).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

NO_DECAY = ("bias", "LayerNorm.weight")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the *trainable* parameters: decayed, and names matching ``NO_DECAY`` at 0."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(nd in name for nd in NO_DECAY) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters: nothing to optimise")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def no_decay_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters that get no weight decay (for the run's saved config)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and any(nd in n for nd in NO_DECAY)]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01, eps: float = 1e-6,
                    betas: Iterable[float] = (0.9, 0.999)) -> torch.optim.AdamW:
    b1, b2 = tuple(betas)
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, eps=eps, betas=(b1, b2))


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """``int(t_total * warmup_ratio)``, as the official trainer truncates it."""
    return int(total_steps * warmup_ratio)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.1
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0 at ``total_steps``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return get_linear_schedule_with_warmup(optimizer, warmup_steps(total_steps, warmup_ratio), total_steps)
