"""One function that applies a PET method to a backbone: ``build_model``."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from vlpet.backbones import BART_BASE_GENERATION, BackboneInfo, load_backbone, load_pretrained_tokenizer
from vlpet.config import MethodConfig, method_config
from vlpet.model import VisualConfig, VLSeq2Seq
from vlpet.tokenization import add_vl_special_tokens, vl_vocab_size

log = logging.getLogger(__name__)


def _resize_vocab(hf: nn.Module, info: BackboneInfo, new_size: int, seed: int | None) -> int:
    """Grow the word embeddings to ``new_size``; new rows N(0, 0.02²) for BART, N(0, 1) for T5 (docs/method.md §3)."""
    old = hf.get_input_embeddings().num_embeddings
    if new_size == old:
        return old
    hf.resize_token_embeddings(new_size, mean_resizing=False)
    if new_size > old:
        weight = hf.get_input_embeddings().weight
        if weight.device.type != "meta":
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            std = hf.config.init_std if info.family == "bart" else 1.0
            rows = torch.randn(new_size - old, weight.shape[1], generator=gen) * std
            with torch.no_grad():
                weight[old:] = rows.to(weight.dtype)
    return old


def resolve_method(method: str | MethodConfig) -> MethodConfig:
    return method_config(method) if isinstance(method, str) else method


def build_model(backbone: str = "bart-base", method: str | MethodConfig = "vl-pet-large", *, feat_dim: int = 2048,
                tokenizer: Any = None, visual: VisualConfig | None = None, weights: str = "official",
                seed: int | None = None, vocab_size: int | None = None, dropout: float | None = None,
                **backbone_overrides: Any) -> tuple[VLSeq2Seq, Any]:
    """Load ``backbone``, add the VL special tokens, the visual projector and ``method``'s modules.

    Returns ``(model, tokenizer)``. ``weights``: ``official`` (default: the backbone's public checkpoint,
    downloaded on first use; see ``vlpet.backbones``) or ``random``. The tokenizer is the backbone's own when it
    is pretrained (with the VL special tokens added), else the one you pass (e.g. from
    ``vlpet.tokenization.train_tokenizer``), else None: the vocabulary is then sized like the public tokenizer's
    (BART 50465, T5 32200).
    ``seed`` makes random initialisation reproducible; ``dropout`` (None: the backbone's own) replaces every
    dropout probability of the backbone.
    """
    if seed is not None:
        torch.manual_seed(seed)
    cfg = resolve_method(method)
    overrides = dict(backbone_overrides)
    if tokenizer is not None:
        overrides.setdefault("vocab_size", len(tokenizer))
    hf, info = load_backbone(backbone, weights=weights, dropout=dropout, **overrides)
    if tokenizer is None and info.pretrained:
        tokenizer = load_pretrained_tokenizer(info)
        if tokenizer is not None:
            add_vl_special_tokens(tokenizer)
    if vocab_size is not None:
        target = vocab_size
    elif tokenizer is not None:
        target = len(tokenizer)
    else:
        target = vl_vocab_size(info.family)
    base = _resize_vocab(hf, info, target, seed)
    if info.family == "bart" and not info.pretrained:
        # The official BART generate calls inherit bart-base's hub generation defaults (docs/method.md §5).
        for k, v in BART_BASE_GENERATION.items():
            setattr(hf.generation_config, k, v)
    plan = cfg.plan(info.family, hf.config.d_model)
    model = VLSeq2Seq(hf, info, cfg, plan, visual or VisualConfig(feat_dim=feat_dim), base_vocab_size=base)
    for note in plan.notes:
        log.warning(note)
    return model, tokenizer
