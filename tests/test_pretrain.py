"""The denoising pre-training of a random tiny backbone (``vlpet.pretrain``): which positions it trains, that
its length-sorted chunks give the padded batch's loss and gradient, and what it must leave as upstream has it
(the ``<vis_extra_id_k>`` rows at their random init, bart-base's generation defaults)."""

from __future__ import annotations

import pytest
import torch

from flows.runs import pretraining_max_length
from vlpet.backbones import load_backbone
from vlpet.pretrain import denoising_pretrain

# BART's learned position embeddings put position p in row p + 2.
BART_POS_OFFSET = 2


def _moved_rows(tokenizer, tmp_path, texts, max_length):
    """Per position row of the encoder's position embeddings: how far pre-training moved it from its init."""
    torch.manual_seed(0)  # denoising_pretrain seeds the same way before building the random model
    init, _ = load_backbone("tiny-bart", vocab_size=len(tokenizer))
    denoising_pretrain("tiny-bart", tokenizer, texts, tmp_path / f"bb{max_length}", steps=2, batch_size=2,
                       seed=0, max_length=max_length)
    done, _ = load_backbone(str(tmp_path / f"bb{max_length}"))
    before = init.get_encoder().embed_positions.weight
    after = done.get_encoder().embed_positions.weight
    return (after - before).abs().amax(dim=1)


def test_pretraining_trains_the_positions_up_to_max_length_and_no_further(tokenizers, tmp_path):
    tok = tokenizers["bart"]
    texts = ["red blue " * 60] * 2
    n_tokens = len(tok(texts[0]).input_ids)
    assert n_tokens > 100
    # Adam moves a parameter with a gradient by ~lr (1e-3) per step; a row without one only decays (lr x 0.01).
    short = _moved_rows(tok, tmp_path, texts, max_length=48)
    assert (short[BART_POS_OFFSET:BART_POS_OFFSET + 48] > 1e-4).all()
    assert (short[BART_POS_OFFSET + 48:] < 1e-5).all()  # the old fixed cap left these at their random init
    full = _moved_rows(tok, tmp_path, texts, max_length=256)
    assert (full[BART_POS_OFFSET:BART_POS_OFFSET + n_tokens] > 1e-4).all()
    assert (full[BART_POS_OFFSET + n_tokens:] < 1e-5).all()


def test_pretraining_length_covers_every_input_position_the_tasks_feed():
    # docs/data.md §4.3, §5: video inputs are truncated at 600 tokens, image inputs at 20 (VQA, GQA) / 40 (COCO);
    # NLVR2's are not truncated (upstream), which adds no bound beyond the 64 floor.
    assert pretraining_max_length(["tvqa", "how2qa", "tvc", "yc2c"]) == 600
    assert pretraining_max_length(["vqa", "gqa", "nlvr2", "coco"]) == 64


def test_chunked_backward_gives_the_whole_batch_loss_and_gradient(tokenizers):
    """Sorting a batch by length and running it in chunks only saves padding: with no masking noise and no
    dropout, loss and gradients equal one forward pass over the whole padded batch."""
    from vlpet.pretrain import denoising_backward

    tok = tokenizers["bart"]
    batch = ["red", "a red circle left of a blue square " * 3, "yes", "vqa: what color is the circle?", "2"]
    torch.manual_seed(0)
    model, _ = load_backbone("tiny-bart", vocab_size=len(tok), dropout=0.0)
    model.train()
    grads = []
    losses = []
    for chunk_size in (len(batch), 2):
        model.zero_grad()
        losses.append(denoising_backward(model, tok, batch, max_length=64, mask_id=tok.mask_token_id,
                                         mask_prob=0.0, gen=torch.Generator().manual_seed(0),
                                         chunk_size=chunk_size))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    # The reference: the plain HF loss of the whole batch padded to its longest row.
    enc = tok(batch, padding=True, return_tensors="pt")
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    whole = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=labels).loss.item()
    assert losses[0] == pytest.approx(whole, rel=1e-5) and losses[1] == pytest.approx(whole, rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backbone", ["tiny-bart", "tiny-t5"])
def test_object_order_rows_keep_their_initial_draw(tokenizers, tmp_path, backbone):
    """Upstream's <vis_extra_id_k> rows come from resize_token_embeddings and stay frozen: pre-training must not
    move them (the tied LM head's softmax gradient and weight decay would), while the word rows it trains move."""
    tok = tokenizers["bart" if "bart" in backbone else "t5"]
    vis_rows = [tok.convert_tokens_to_ids(f"<vis_extra_id_{k}>") for k in range(100)]
    assert vis_rows == list(range(len(tok) - 1, len(tok) - 101, -1))  # the last 100 rows, descending
    torch.manual_seed(0)  # denoising_pretrain seeds the same way before building the random model
    init, _ = load_backbone(backbone, vocab_size=len(tok))
    denoising_pretrain(backbone, tok, ["a red circle left of a blue square", "what color is the circle?"],
                       tmp_path / "bb", steps=3, batch_size=2, lr=1e-2, seed=0)
    done, _ = load_backbone(str(tmp_path / "bb"))
    before, after = init.get_input_embeddings().weight, done.get_input_embeddings().weight
    assert torch.equal(after[vis_rows], before[vis_rows])
    red = tok.convert_tokens_to_ids(tok.tokenize(" red")[0])
    assert not torch.equal(after[red], before[red])  # an input token's row did train


def test_denoised_bart_directory_keeps_the_bart_base_generation_defaults(tokenizers, tmp_path):
    """bart-base's hub defaults (4 beams, no_repeat_ngram_size 3, early stopping), which every official BART
    generate call inherits, as for a random tiny-bart built directly."""
    from vlpet.build import build_model

    tok = tokenizers["bart"]
    denoising_pretrain("tiny-bart", tok, ["a red circle", "a blue square"], tmp_path / "bb", steps=1, batch_size=2)
    model, _ = build_model(str(tmp_path / "bb"), "vl-pet-small", feat_dim=8)
    gc = model.backbone.generation_config
    assert (gc.num_beams, gc.no_repeat_ngram_size, gc.early_stopping) == (4, 3, True)
