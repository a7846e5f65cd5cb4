"""Short denoising pre-training of a small random backbone on the project's own text.

Why: a randomly initialised, *frozen* BART/T5 cannot express a confident prediction (BART's tied
lm_head rows have norm ≈ 0.02·√d), so a PET method on top of it learns almost nothing. When no
pretrained checkpoint is available (this project's machines have no model hub), we pre-train the tiny
backbone with full fine-tuning on a text-reconstruction objective (30% of tokens masked; BART with
``<mask>``, T5 with ``<extra_id_0>``) and save it as a local backbone directory. The directory carries
``vlpet_pretraining.json`` so models built from it, their checkpoints and lineage say exactly what it is:
not a public pretrained model, but a random init denoised on synthetic text.

Two things stay as upstream, where the backbone goes straight from the hub to fine-tuning: the
``<vis_extra_id_k>`` word-embedding rows (the frozen object-order embeddings of fine-tuning) keep their random
init, and a BART directory carries bart-base's hub generation defaults.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vlpet.backbones import BART_BASE_GENERATION, RandomWeightsWarning, load_backbone
from vlpet.tokenization import vis_extra_id_tokens

PRETRAINING_RECORD = "vlpet_pretraining.json"
CHUNK_SIZE = 8  # rows per forward pass of a pre-training batch (see denoising_backward)


def _corrupt(ids: torch.Tensor, special: torch.Tensor, mask_id: int, prob: float, gen: torch.Generator
             ) -> torch.Tensor:
    noise = torch.rand(ids.shape, generator=gen) < prob
    return ids.masked_fill(noise & ~special, mask_id)


def denoising_backward(model: Any, tokenizer: Any, batch: Sequence[str], *, max_length: int, mask_id: int,
                       mask_prob: float, gen: torch.Generator, chunk_size: int = CHUNK_SIZE) -> float:
    """Back-propagate the batch's denoising loss (the mean over all its tokens) and return it.

    Why in chunks: a random batch mixes answers of 3 tokens with video inputs of ~120, and one padded tensor
    pays for the longest on every row. The rows are sorted by length and run ``chunk_size`` at a time, each
    chunk's mean loss weighted by its share of the batch's tokens: the same loss and gradient, less padding."""
    lengths = [len(ids) for ids in tokenizer(list(batch), truncation=True, max_length=max_length).input_ids]
    order = sorted(range(len(batch)), key=lengths.__getitem__)
    n_tokens = sum(lengths)  # every token is a label (padding is not)
    total = 0.0
    for k in range(0, len(order), chunk_size):
        chunk = [batch[i] for i in order[k:k + chunk_size]]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                        return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask").bool()
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        inputs = _corrupt(enc.input_ids, special, mask_id, mask_prob, gen)
        share = int(enc.attention_mask.sum()) / n_tokens
        loss = model(input_ids=inputs, attention_mask=enc.attention_mask, labels=labels).loss * share
        loss.backward()
        total += loss.item()
    return total


def vis_extra_rows(tokenizer: Any) -> list[int]:
    """Word-embedding rows of the ``<vis_extra_id_k>`` tokens the tokenizer holds (none: empty)."""
    vocab = tokenizer.get_vocab()
    return sorted(vocab[t] for t in vis_extra_id_tokens() if t in vocab)


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the pre-training corpus (the texts joined by newlines): what the record names it by."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def pretraining_record(backbone: str | Path) -> dict[str, Any] | None:
    """The record of a backbone directory made by ``denoising_pretrain`` (a random init, not a public
    checkpoint, whoever passes it on); None for anything else."""
    path = Path(backbone).expanduser() / PRETRAINING_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def adamw_with_warmup(params: Any, lr: float, steps: int) -> tuple[Any, Any]:
    """AdamW with a linear warm-up over the first tenth of ``steps``, then a linear decay to zero."""
    opt = torch.optim.AdamW(params, lr=lr, eps=1e-6, weight_decay=0.01)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    return opt, sched


def _save_backbone(model: Any, tokenizer: Any, family: str, out_dir: str | Path) -> Path:
    """The pre-trained backbone and its tokenizer as a Hugging Face directory."""
    if family == "bart":  # load_backbone leaves them unset; a directory built from later loads as "pretrained"
        for k, v in BART_BASE_GENERATION.items():
            setattr(model.generation_config, k, v)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def denoising_pretrain(backbone: str, tokenizer: Any, texts: Sequence[str], out_dir: str | Path, *,
                       steps: int = 200, batch_size: int = 32, lr: float = 1e-3, mask_prob: float = 0.3,
                       seed: int = 0, dropout: float | None = None, max_length: int = 64) -> dict[str, Any]:
    """Pre-train ``backbone`` (a tiny preset or any architecture name) from random init; returns the record.

    ``dropout`` (None: the architecture's) is also what the saved backbone config carries into fine-tuning.
    ``max_length`` (tokens per text) must cover the inputs fine-tuning will feed: BART's learned position
    embeddings past it stay at their random init, and a PET method keeps them frozen."""
    if not texts:
        raise ValueError("denoising pre-training needs at least one text")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model, info = load_backbone(backbone, weights="random", vocab_size=len(tokenizer), dropout=dropout)
    if info.pretrained:
        raise ValueError(f"{backbone} already has pretrained weights; denoising pre-training is for random backbones")
    family = info.family
    mask_token = "<mask>" if family == "bart" else "<extra_id_0>"
    mask_id = tokenizer.convert_tokens_to_ids(mask_token)
    # The <vis_extra_id_k> rows are never inputs here, but the tied LM head's softmax gradient and weight decay
    # would move them; fine-tuning reads them as frozen object-order embeddings, which upstream leaves at
    # their random init. So their gradient is zeroed (they take no part in clipping) and their values restored.
    word = model.get_input_embeddings().weight
    frozen_rows = torch.tensor(vis_extra_rows(tokenizer), dtype=torch.long)
    frozen_init = word.detach()[frozen_rows].clone()
    opt, sched = adamw_with_warmup(model.parameters(), lr, steps)
    model.train()
    losses = []
    for _ in range(steps):
        # Random batches on purpose: length-grouped ones (less padding) made the synthetic video preset's
        # fine-tuning collapse to one output for every task (bench/RESULTS.md, session 13).
        batch = [texts[rng.randrange(len(texts))] for _ in range(batch_size)]
        opt.zero_grad()
        loss = denoising_backward(model, tokenizer, batch, max_length=max_length, mask_id=mask_id,
                                  mask_prob=mask_prob, gen=gen)
        if word.grad is not None:
            word.grad[frozen_rows] = 0
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        with torch.no_grad():
            word[frozen_rows] = frozen_init  # undo the decoupled weight decay
        sched.step()
        losses.append(loss)
    out = _save_backbone(model, tokenizer, family, out_dir)
    digest = texts_digest(texts)
    record = {
        "origin": f"random init of {info.name}, denoising pre-trained by vlpet (not a public checkpoint)",
        "architecture": info.name, "objective": f"reconstruct text with {mask_prob:.0%} of tokens masked",
        "steps": steps, "batch_size": batch_size, "max_length": max_length, "lr": lr,
        "seed": seed, "dropout": dropout, "n_texts": len(texts),
        "texts_sha256": digest, "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
    }
    (out / PRETRAINING_RECORD).write_text(json.dumps(record, indent=2))
    return record
