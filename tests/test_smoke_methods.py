"""Every method on tiny BART and T5: forward, backward, beam-5 generate, and a save/load round trip."""

from __future__ import annotations

import pytest
import torch

from vlpet import build_model, load_model, save_checkpoint
from vlpet.config import PAPER_METHODS, TRANSFER_METHODS

FEAT = 32


def _batch(tok):
    enc = tok(["vqa: what color is the circle?", "nlvr: there are two red shapes"], padding=True,
              return_tensors="pt")
    labels = tok(["red", "true"], padding=True, return_tensors="pt").input_ids
    labels[labels == tok.pad_token_id] = -100
    return enc.input_ids, enc.attention_mask, labels


@pytest.mark.parametrize("family", ["bart", "t5"])
@pytest.mark.parametrize("method", PAPER_METHODS + TRANSFER_METHODS)
def test_method_end_to_end(tokenizers, tmp_path, family, method):
    tok = tokenizers[family]
    model, _ = build_model(f"tiny-{family}", method, feat_dim=FEAT, tokenizer=tok, seed=0)
    ids, mask, labels = _batch(tok)
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 49, FEAT, generator=gen)
    out = model(ids, feats, mask, labels=labels)
    assert out["logits"].shape[:2] == labels.shape
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    # NLVR2-style two-image input (72 visual tokens).
    two = model(ids, torch.randn(2, 2, 49, FEAT, generator=gen), mask, labels=labels)
    assert torch.isfinite(two["loss"])

    model.eval()
    seqs = model.generate(ids, feats, mask, num_beams=5, max_new_tokens=6)
    assert seqs.shape[0] == 2 and seqs.shape[1] <= 8
    save_checkpoint(model, tmp_path / "ckpt", tokenizer=tok)
    reloaded, tok2 = load_model(tmp_path / "ckpt")
    reloaded.eval()
    assert len(tok2) == len(tok)
    with torch.no_grad():
        assert torch.equal(model(ids, feats, mask, labels=labels)["logits"],
                           reloaded(ids, feats, mask, labels=labels)["logits"])
    assert torch.equal(seqs, reloaded.generate(ids, feats, mask, num_beams=5, max_new_tokens=6))
