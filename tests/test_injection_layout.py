"""Injection of PET modules into HF BART/T5, trainable sets, encoder layout and visual input (docs/method.md §1, §3-4).

All expectations are independent of the code under test: reference computations are written out by hand
(attention, layer norms, pooling windows, relative-position buckets) from the backbone's own weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlpet.build import build_model
from vlpet.modules import GatedModification
from vlpet.visual import VisualEmbedding, downsample_grid, resize_frames, resize_videos

TEXTS = ["what is the man holding", "a dog on a skateboard", "is there a cat on the table",
         "two people riding bikes in the park", "true", "false"] * 3
FEAT = 64


@pytest.fixture(scope="module")
def toks():
    from vlpet.tokenization import train_tokenizer

    return {"bart": train_tokenizer(TEXTS, "bart", vocab_size=300), "t5": train_tokenizer(TEXTS, "t5", vocab_size=300)}


def _build(backbone: str, method: str, toks, seed: int = 0):
    fam = "bart" if "bart" in backbone else "t5"
    model, tok = build_model(backbone, method, feat_dim=FEAT, tokenizer=toks[fam], seed=seed)
    return model, tok


def _batch(tok, texts=("what is the man holding", "a dog"), targets=("a cat", "dog")):
    enc = tok(list(texts), padding=True, return_tensors="pt")
    labels = tok(list(targets), padding=True, return_tensors="pt").input_ids
    labels[labels == tok.pad_token_id] = -100
    return enc.input_ids, enc.attention_mask, labels


def _randomize_pet(model, seed: int = 0, std: float = 0.3) -> None:
    """Give every PET parameter non-trivial values (so gates are not ≈ constant, ΔH ≠ 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".pet_" in n:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


# ------------------------------------------------------------------------- 8. frozen params after a step
@pytest.mark.parametrize("backbone", ["tiny-bart", "tiny-t5"])
def test_frozen_parameters_bit_identical_after_step(toks, backbone):
    model, tok = _build(backbone, "vl-pet-large", toks)
    model.train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    assert frozen and trainable
    ids, mask, labels = _batch(tok)
    vis = torch.randn(2, 49, FEAT, generator=torch.Generator().manual_seed(1))
    out = model(ids, vis, mask, labels=labels)
    assert out["logits"].shape[:2] == labels.shape
    out["loss"].backward()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
    opt = torch.optim.AdamW(list(trainable.values()), lr=1e-2, weight_decay=0.01)
    opt.step()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p.detach(), frozen[n]), f"frozen parameter {n} changed"
    changed = [n for n, p in trainable.items() if not torch.equal(p.detach(), before[n])]
    assert changed
    # the PET modules and the visual projector both received updates
    assert any(".pet_" in n for n in changed)
    assert any(n.startswith("visual_embedding.") for n in changed)


# ---------------------------------------------------------------------------------- 9. trainable sets
def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _all(model) -> set[str]:
    return {n for n, _ in model.named_parameters()}


def _is_ln(n: str) -> bool:
    return "layer_norm" in n.lower() or "layernorm" in n.lower()


def test_trainable_set_vl_pet_bart(toks):
    model, _ = _build("tiny-bart", "vl-pet-large", toks)
    names = _all(model)
    expected = {n for n in names
                if "pet_" in n or n.startswith("visual_embedding.") or ("encoder." in n and _is_ln(n))}
    assert _trainable(model) == expected
    # explicit spot checks
    tr = _trainable(model)
    assert "backbone.model.encoder.layernorm_embedding.weight" in tr
    assert "backbone.model.encoder.layers.0.self_attn_layer_norm.bias" in tr
    assert "backbone.model.encoder.layers.1.final_layer_norm.weight" in tr
    assert "backbone.model.decoder.layers.0.encoder_attn.v_proj.pet_vpa.down.weight" in tr
    assert "backbone.model.encoder.layers.0.pet_attn.gate.up.weight" in tr
    assert "backbone.model.encoder.layers.0.pet_ffn.delta.down.3.bias" in tr
    # no decoder LN, no word embedding, no LM head, no frozen backbone linear
    assert not any("decoder." in n and _is_ln(n) for n in tr)
    assert not model.backbone.get_input_embeddings().weight.requires_grad
    assert not model.backbone.get_output_embeddings().weight.requires_grad
    assert not any("shared" in n or "embed_tokens" in n or "lm_head" in n for n in tr)
    assert "backbone.model.encoder.layers.0.fc1.weight" not in tr
    assert "backbone.model.decoder.layers.0.encoder_attn.v_proj.weight" not in tr
    # the count, by hand for tiny-bart (d=128, r=g=16, 4 heads, VPA 16, 2+2 layers, feat 64)
    d, r = 128, 16
    enc_lns = 2 * (2 * 2 * d) + 2 * d
    delta = 4 * (d * (r // 4) + r // 4) + (r * d + d)
    gate = (d * r + r) + (r * d + d)
    vpa = (d * r + r) + (r * d + d)
    vis = (FEAT * d + d) + 2 * d + (5 * d + d) + 2 * d + 2 * d
    n_tr = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_tr == enc_lns + 4 * (delta + gate) + 2 * vpa + vis == 53_536


def test_trainable_set_vl_pet_t5(toks):
    model, _ = _build("tiny-t5", "vl-pet-small", toks)
    names = _all(model)
    expected = {n for n in names
                if "pet_" in n or n.startswith("visual_embedding.") or ("encoder." in n and _is_ln(n))}
    assert _trainable(model) == expected
    tr = _trainable(model)
    assert "backbone.encoder.final_layer_norm.weight" in tr
    assert "backbone.encoder.block.1.layer.1.layer_norm.weight" in tr
    assert "backbone.decoder.final_layer_norm.weight" not in tr
    assert "backbone.decoder.block.0.layer.1.EncDecAttention.v.pet_vpa.up.weight" in tr


def test_trainable_set_vl_adapter_all_layer_norms(toks):
    model, _ = _build("tiny-bart", "vl-adapter", toks)
    names = _all(model)
    expected = {n for n in names if "pet_" in n or n.startswith("visual_embedding.") or _is_ln(n)}
    assert _trainable(model) == expected
    tr = _trainable(model)
    assert "backbone.model.decoder.layers.0.self_attn_layer_norm.weight" in tr
    assert "backbone.model.decoder.layers.1.encoder_attn_layer_norm.bias" in tr
    assert "backbone.model.decoder.layernorm_embedding.weight" in tr
    assert "backbone.model.encoder.layers.0.final_layer_norm.weight" in tr
    # decoder sequential adapters after self-attn, cross-attn and FFN
    assert any(".decoder.layers.0.pet_self." in n for n in tr)
    assert any(".decoder.layers.0.pet_cross." in n for n in tr)
    assert any(".decoder.layers.0.pet_ffn." in n for n in tr)


def test_trainable_set_lora(toks):
    model, _ = _build("tiny-bart", "lora", toks)
    names = _all(model)
    expected = {n for n in names if n.endswith("bias") or n.endswith("lora_A") or n.endswith("lora_B")
                or n.startswith("visual_embedding.")}
    assert _trainable(model) == expected
    lora_names = {n for n in expected if n.endswith(("lora_A", "lora_B"))}
    # q and v of encoder self (2 layers), decoder self and cross (2 layers each): 12 branches × (A, B)
    assert len(lora_names) == 24
    assert "backbone.model.decoder.layers.1.encoder_attn.v_proj.lora.lora_B" in lora_names
    assert not model.backbone.get_input_embeddings().weight.requires_grad


def test_trainable_set_full(toks):
    model, _ = _build("tiny-bart", "full", toks)
    assert all(p.requires_grad for p in model.parameters())


# -------------------------------------------------------------------------- 10. decoder untouched by VL-PET
VLPET = ["vl-pet-large", "vl-pet-middlex", "vl-pet-middley", "vl-pet-small"]


def _hooks(m) -> int:
    return len(m._forward_hooks) + len(m._forward_pre_hooks)


@pytest.mark.parametrize("method", VLPET)
def test_bart_hooks_only_where_expected(toks, method):
    model, _ = _build("tiny-bart", method, toks)
    for layer in model.backbone.get_decoder().layers:
        pets = [n for n, _ in layer.named_modules() if any(part.startswith("pet_") for part in n.split("."))]
        assert {n.split(".")[-1] for n in pets if n.count(".") == 2} == {"pet_vpa"}
        assert all(n.startswith("encoder_attn.v_proj.pet_vpa") for n in pets), pets
        assert _hooks(layer.self_attn) == 0 and _hooks(layer.fc1) == 0 and _hooks(layer.fc2) == 0
        assert _hooks(layer.encoder_attn) == 0 and _hooks(layer.encoder_attn.k_proj) == 0
        assert _hooks(layer.self_attn.v_proj) == 0 and _hooks(layer.self_attn.q_proj) == 0
        assert len(layer.encoder_attn.v_proj._forward_hooks) == 1
        assert not hasattr(layer, "pet_self") and not hasattr(layer, "pet_ffn") and not hasattr(layer, "pet_cross")
    for layer in model.backbone.get_encoder().layers:
        assert isinstance(layer.pet_attn, GatedModification) and isinstance(layer.pet_ffn, GatedModification)
        assert len(layer.self_attn._forward_hooks) == 1 and len(layer.self_attn._forward_pre_hooks) == 1
        assert len(layer.fc1._forward_pre_hooks) == 1 and len(layer.fc2._forward_hooks) == 1


@pytest.mark.parametrize("method", ["vl-pet-large", "vl-pet-middley"])
def test_t5_hooks_only_where_expected(toks, method):
    model, _ = _build("tiny-t5", method, toks)
    for block in model.backbone.get_decoder().block:
        sa, ca, ff = block.layer
        for mod in (sa, ff):
            assert not any("pet_" in n for n, _ in mod.named_modules())
            assert all(_hooks(m) == 0 for m in mod.modules())
        assert [n for n, _ in ca.named_modules() if "pet_" in n.split(".")[-1]] == ["EncDecAttention.v.pet_vpa"]
        assert len(ca.EncDecAttention.v._forward_hooks) == 1
        assert _hooks(ca) == 0 and _hooks(ca.EncDecAttention) == 0


def test_decoder_self_attention_and_ffn_outputs_unchanged(toks):
    """Same backbone weights (same seed): decoder self-attn / FFN outputs identical with and without VL-PET,
    while the encoder self-attention output is modified."""
    pet, _ = _build("tiny-bart", "vl-pet-large", toks, seed=3)
    ref, _ = _build("tiny-bart", "bitfit", toks, seed=3)
    assert all(_hooks(m) == 0 for m in ref.modules())  # bitfit adds nothing, HF registers no hooks
    pet.eval(), ref.eval()
    d = pet.backbone.config.d_model
    x = torch.randn(2, 5, d, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for lp, lr in zip(pet.backbone.get_decoder().layers, ref.backbone.get_decoder().layers):
            assert torch.equal(lp.self_attn.q_proj.weight, lr.self_attn.q_proj.weight)
            assert torch.equal(lp.self_attn(x)[0], lr.self_attn(x)[0])
            y = torch.randn(2, 5, lp.fc1.in_features)
            assert torch.equal(lp.fc2(lp.activation_fn(lp.fc1(y))), lr.fc2(lr.activation_fn(lr.fc1(y))))
            # the cross-attention value projection is the one place that changes
            assert not torch.allclose(lp.encoder_attn.v_proj(x), lr.encoder_attn.v_proj(x))
        ep, er = pet.backbone.get_encoder().layers[0], ref.backbone.get_encoder().layers[0]
        assert not torch.allclose(ep.self_attn(x)[0], er.self_attn(x)[0])


# ------------------------------------------------------------------------ 11. hooks vs hand-written layer
def _mha(x, wq, bq, wk, bk, wv, bv, wo, bo, heads, scale, bias=None):
    """Multi-head attention written out: softmax(q kᵀ · scale + bias) v, then the output projection."""
    b, n, _ = x.shape

    def proj(w, bb):
        y = x @ w.T + (bb if bb is not None else 0.0)
        return y.view(b, n, heads, -1).transpose(1, 2)

    q, k, v = proj(wq, bq), proj(wk, bk), proj(wv, bv)
    scores = q @ k.transpose(-1, -2) * scale
    if bias is not None:
        scores = scores + bias
    attn = torch.softmax(scores, dim=-1) @ v
    attn = attn.transpose(1, 2).reshape(b, n, -1)
    return attn @ wo.T + (bo if bo is not None else 0.0)


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


@pytest.mark.parametrize("method", ["vl-pet-small", "vl-pet-large"])
def test_bart_encoder_layer_matches_hand_reference(toks, method):
    model, _ = _build("tiny-bart", method, toks)
    _randomize_pet(model, seed=5)
    model.double().eval()
    layer = model.backbone.get_encoder().layers[0]
    cfg = model.backbone.config
    heads = cfg.encoder_attention_heads
    d = cfg.d_model
    X = torch.randn(2, 7, d, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    sa = layer.self_attn
    with torch.no_grad():
        H = _mha(X, sa.q_proj.weight, sa.q_proj.bias, sa.k_proj.weight, sa.k_proj.bias, sa.v_proj.weight,
                 sa.v_proj.bias, sa.out_proj.weight, sa.out_proj.bias, heads, (d // heads) ** -0.5)
        ln1, ln2 = layer.self_attn_layer_norm, layer.final_layer_norm
        out1 = _ln(X + layer.pet_attn(X, H), ln1.weight, ln1.bias, ln1.eps)
        hid = F.gelu(out1 @ layer.fc1.weight.T + layer.fc1.bias)  # bart-base activation: exact (erf) gelu
        H2 = hid @ layer.fc2.weight.T + layer.fc2.bias
        expected = _ln(out1 + layer.pet_ffn(out1, H2), ln2.weight, ln2.bias, ln2.eps)
        got = layer(X, attention_mask=None)
        got = got[0] if isinstance(got, tuple) else got
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
        # sanity: the PET modules matter (a stock layer would give something else)
        stock1 = _ln(X + H, ln1.weight, ln1.bias, ln1.eps)
        stock = _ln(stock1 + F.gelu(stock1 @ layer.fc1.weight.T + layer.fc1.bias) @ layer.fc2.weight.T
                    + layer.fc2.bias, ln2.weight, ln2.bias, ln2.eps)
        assert (got - stock).abs().max() > 1e-3
        # X is not left stashed on the module after the call
        assert "_x" not in layer.pet_attn.__dict__ and "_x" not in layer.pet_ffn.__dict__


def _t5_rms(x, w, eps):
    """T5 RMS norm. HF's T5LayerNorm accumulates the mean square in float32 even for float64 input."""
    ms = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(ms + eps) * w


@pytest.mark.parametrize("method", ["vl-pet-large", "vl-pet-middlex"])
def test_t5_encoder_block_matches_hand_reference(toks, method):
    model, _ = _build("tiny-t5", method, toks)
    _randomize_pet(model, seed=7)
    model.double().eval()
    block = model.backbone.get_encoder().block[0]
    attn_layer, ff_layer = block.layer[0], block.layer[-1]
    sa = attn_layer.SelfAttention
    cfg = model.backbone.config
    n = 7
    X = torch.randn(2, n, cfg.d_model, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with torch.no_grad():
        bias = sa.compute_bias(n, n)  # layout inactive: the stock bias (checked by hand in test_t5_*_bias)
        normed = _t5_rms(X, attn_layer.layer_norm.weight, attn_layer.layer_norm.variance_epsilon)
        H = _mha(normed, sa.q.weight, None, sa.k.weight, None, sa.v.weight, None, sa.o.weight, None,
                 cfg.num_heads, 1.0, bias)  # T5: no 1/sqrt(d) scaling
        out1 = X + attn_layer.pet_attn(X, H)  # G reads the raw residual X, before the pre-LN
        got1 = attn_layer(X)[0]
        torch.testing.assert_close(got1, out1, rtol=0, atol=1e-10)

        normed2 = _t5_rms(out1, ff_layer.layer_norm.weight, ff_layer.layer_norm.variance_epsilon)
        drd = ff_layer.DenseReluDense
        H2 = torch.relu(normed2 @ drd.wi.weight.T) @ drd.wo.weight.T
        expected = out1 + ff_layer.pet_ffn(out1, H2)
        torch.testing.assert_close(ff_layer(out1), expected, rtol=0, atol=1e-10)
        torch.testing.assert_close(block(X)[0], expected, rtol=0, atol=1e-10)
        assert (got1 - (X + H)).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------- 12. layout
def test_bart_layout_positions_and_embedding_layer_norm(toks):
    model, _ = _build("tiny-bart", "vl-pet-large", toks)
    enc = model.backbone.get_encoder()
    pos, ln = enc.embed_positions, enc.layernorm_embedding
    layout = model.layout
    T, V, d = 5, 36, model.backbone.config.d_model
    dummy = torch.zeros(2, T + V)
    W = pos.weight.detach()  # BART learned positions: row p + 2 for position p
    with torch.no_grad():
        ln.weight.copy_(torch.randn(d))
        ln.bias.copy_(torch.randn(d))
    x = torch.randn(2, T + V, d, generator=torch.Generator().manual_seed(2))
    try:
        layout.set(0, T)
        with torch.no_grad():
            out = pos(dummy)
            assert out.shape == (2, T + V, d)
            assert torch.equal(out[:, :T], W[2:2 + T].expand(2, -1, -1))
            assert torch.equal(out[:, T:], torch.zeros(2, V, d))
            y = ln(x)
            torch.testing.assert_close(y[:, :T], _ln(x[:, :T], ln.weight, ln.bias, ln.eps), rtol=0, atol=1e-5)
            assert torch.equal(y[:, T:], x[:, T:])
            # with a prompt segment in front: prompts and visual tokens get no position; the embedding
            # LayerNorm runs on [prompts ; text] (upstream concatenates the prompts before it), not on visual
            layout.set(3, T)
            out = pos(torch.zeros(2, 3 + T + V))
            assert torch.equal(out[:, :3], torch.zeros(2, 3, d))
            assert torch.equal(out[:, 3:3 + T], W[2:2 + T].expand(2, -1, -1))
            assert torch.equal(out[:, 3 + T:], torch.zeros(2, V, d))
            y = ln(x)
            assert torch.equal(y[:, 3 + T:], x[:, 3 + T:])
            torch.testing.assert_close(y[:, :3 + T], _ln(x[:, :3 + T], ln.weight, ln.bias, ln.eps),
                                       rtol=0, atol=1e-5)
    finally:
        layout.clear()
    assert not layout.active
    with torch.no_grad():
        assert torch.equal(pos(dummy), W[2:2 + T + V].expand(2, -1, -1))
        torch.testing.assert_close(ln(x), _ln(x, ln.weight, ln.bias, ln.eps), rtol=0, atol=1e-5)


def _bucket_small(rel: int) -> int:
    """T5 bidirectional bucket for |rel| < 8 (32 buckets: 16 per direction, first 8 exact)."""
    assert abs(rel) < 8
    return (16 if rel > 0 else 0) + abs(rel)


def test_t5_layout_relative_bias_language_block_only(toks):
    model, _ = _build("tiny-t5", "vl-pet-large", toks)
    sa = model.backbone.get_encoder().block[0].layer[0].SelfAttention
    table = sa.relative_attention_bias.weight.detach()
    L, T = 8, 4
    layout = model.layout
    with torch.no_grad():
        stock = sa.compute_bias(L, L)
    assert stock.shape == (1, model.backbone.config.num_heads, L, L)
    for i in range(L):
        for j in range(L):
            assert torch.equal(stock[0, :, i, j], table[_bucket_small(j - i)])
    try:
        layout.set(0, T)
        with torch.no_grad():
            b = sa.compute_bias(L, L)
        layout.set(2, 3)
        with torch.no_grad():
            bp = sa.compute_bias(L, L)
    finally:
        layout.clear()
    for i in range(L):
        for j in range(L):
            if i < T and j < T:
                assert torch.equal(b[0, :, i, j], stock[0, :, i, j])
            else:
                assert torch.equal(b[0, :, i, j], torch.zeros_like(b[0, :, i, j])), (i, j)
            # prompts share the block with the text, positions counted from the first prompt (upstream's
            # compute_bias(P + T, P + T) in the top-left corner)
            if i < 5 and j < 5:
                assert torch.equal(bp[0, :, i, j], table[_bucket_small(j - i)])
            else:
                assert not bp[0, :, i, j].any(), (i, j)
    # cleared layout → stock again
    with torch.no_grad():
        assert torch.equal(sa.compute_bias(L, L), stock)


@pytest.mark.parametrize("backbone", ["tiny-bart", "tiny-t5"])
def test_encode_mask_covers_text_and_visual(toks, backbone):
    model, tok = _build(backbone, "vl-pet-large", toks)
    model.eval()
    ids, mask, _ = _batch(tok)
    B, T = ids.shape
    d = model.backbone.config.d_model
    with torch.no_grad():
        out, full = model.encode(ids, mask, torch.randn(B, 49, FEAT))
        assert full.shape == (B, T + 36)
        assert torch.equal(full[:, :T], mask) and torch.equal(full[:, T:], torch.ones(B, 36, dtype=full.dtype))
        assert out.last_hidden_state.shape == (B, T + 36, d)
        out, full = model.encode(ids, mask, torch.randn(B, 2, 49, FEAT))
        assert full.shape == (B, T + 72)
        assert torch.equal(full[:, T:], torch.ones(B, 72, dtype=full.dtype))
        assert out.last_hidden_state.shape == (B, T + 72, d)
        # video: 64 frames (8x8, not 49) pass through; padded frames are not masked by default
        out, full = model.encode(ids, mask, torch.randn(B, 64, FEAT), vis_attention_mask=torch.zeros(B, 64))
        assert full.shape == (B, T + 64) and bool(full[:, T:].all())
    assert not model.layout.active  # encode clears the layout afterwards


# ------------------------------------------------------------------------------------- 13. visual helpers
def test_downsample_grid_is_overlapping_2x2_max():
    g = torch.Generator().manual_seed(0)
    grid = torch.randn(2, 49, 3, generator=g)
    out = downsample_grid(grid)
    assert out.shape == (2, 36, 3)
    for b in range(2):
        for i in range(6):
            for j in range(6):
                cells = [grid[b, r * 7 + c] for r in (i, i + 1) for c in (j, j + 1)]
                assert torch.equal(out[b, i * 6 + j], torch.stack(cells).max(0).values), (i, j)
    # a concrete case: value k at cell k → every window's max is its bottom-right cell
    ar = torch.arange(49.0).view(1, 49, 1)
    expected = torch.tensor([(i + 1) * 7 + (j + 1) for i in range(6) for j in range(6)], dtype=torch.float32)
    assert torch.equal(downsample_grid(ar)[0, :, 0], expected)
    # leading dims (B, I, 49, F) are kept
    assert downsample_grid(torch.randn(2, 2, 49, 3)).shape == (2, 2, 36, 3)
    with pytest.raises(ValueError):
        downsample_grid(torch.randn(1, 50, 3))


def test_resize_frames_pad_and_pool():
    g = torch.Generator().manual_seed(1)
    short = torch.randn(10, 5, generator=g)
    out = resize_frames(short)
    assert out.shape == (64, 5)
    assert torch.equal(out[:10], short) and torch.equal(out[10:], torch.zeros(54, 5))
    long = torch.randn(128, 5, generator=g)
    out = resize_frames(long)
    assert out.shape == (64, 5)
    for j in range(64):
        assert torch.equal(out[j], torch.maximum(long[2 * j], long[2 * j + 1]))
    exact = torch.randn(64, 5, generator=g)
    assert torch.equal(resize_frames(exact), exact)


def test_resize_videos_returns_real_frame_mask():
    vids = [torch.randn(10, 4), torch.randn(64, 4), torch.randn(100, 4)]
    feats, mask = resize_videos(vids)
    assert feats.shape == (3, 64, 4) and mask.shape == (3, 64)
    assert mask[0, :10].tolist() == [1] * 10 and mask[0, 10:].tolist() == [0] * 54
    assert bool(mask[1].all()) and bool(mask[2].all())
    assert torch.equal(feats[0, :10], vids[0]) and torch.equal(feats[1], vids[1])


def test_visual_embedding_rejects_wrong_feature_dim():
    emb = torch.nn.Embedding(50, 16)
    ve = VisualEmbedding(32, 16, emb, "bart")
    assert ve(torch.randn(2, 6, 32)).shape == (2, 6, 16)
    with pytest.raises(ValueError, match="expects") as err:
        ve(torch.randn(2, 6, 48))
    assert "32" in str(err.value)
    # the word embedding is referenced, not registered (stays out of visual_embedding's parameters)
    assert all(p is not emb.weight for p in ve.parameters())


def test_model_rejects_wrong_feature_dim(toks):
    model, tok = _build("tiny-bart", "vl-pet-small", toks)
    ids, mask, labels = _batch(tok)
    with pytest.raises(ValueError, match="expects"):
        model(ids, torch.randn(2, 49, FEAT + 1), mask, labels=labels)


# -------------------------------------------------------------------------------------- 14. NLVR2 input
@pytest.mark.parametrize("backbone", ["tiny-bart", "tiny-t5"])
def test_two_image_visual_embedding_order_ids(toks, backbone):
    model, _ = _build(backbone, "vl-pet-large", toks)
    model.eval()
    ve = model.visual_embedding
    B = 2
    feats = torch.randn(B, 2, 49, FEAT, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model.embed_visual(feats)
        assert got.shape == (B, 72, model.backbone.config.d_model)

        # downsample each image by hand: 6x6 max over [i, i+1] x [j, j+1]
        grid = feats.view(B, 2, 7, 7, FEAT)
        pooled = torch.stack([torch.stack([grid[:, :, i:i + 2, j:j + 2].amax(dim=(2, 3))
                                           for j in range(6)], 2) for i in range(6)], 2)  # (B, 2, 6, 6, F)
        pooled = pooled.reshape(B, 72, FEAT)
        word = model.backbone.get_input_embeddings().weight
        vocab = word.shape[0]
        img_ids = torch.tensor([0] * 36 + [1] * 36)
        obj_rows = torch.tensor([vocab - 1 - k for k in range(36)] * 2)
        expected = (ve.feat_embedding(pooled)
                    + ve.absolute_vis_pos_embedding(torch.zeros(B, 72, 5))
                    + ve.img_order_embedding.weight[img_ids]
                    + word[obj_rows])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)

        # the two images differ only through their features and img-order rows: same features → the
        # difference between the first and second half is exactly img_order[0] - img_order[1]
        same = feats[:, :1].expand(-1, 2, -1, -1)
        e = model.embed_visual(same)
        diff = ve.img_order_embedding.weight[0] - ve.img_order_embedding.weight[1]
        torch.testing.assert_close(e[:, :36] - e[:, 36:], diff.expand(B, 36, -1), rtol=0, atol=1e-5)
    # the obj-order rows are the <vis_extra_id_k> tokens, appended in descending order
    tok = toks["bart" if "bart" in backbone else "t5"]
    assert tok.convert_tokens_to_ids("<vis_extra_id_0>") == vocab - 1
    assert tok.convert_tokens_to_ids("<vis_extra_id_35>") == vocab - 36


def test_encode_with_prompt_tuning_prepends_prompts(toks):
    model, tok = _build("tiny-bart", "prompt-tuning", toks)
    model.eval()
    ids, mask, _ = _batch(tok)
    B, T = ids.shape
    with torch.no_grad():
        out, full = model.encode(ids, mask, torch.randn(B, 49, FEAT))
    assert full.shape == (B, 40 + T + 36)
    assert bool(full[:, :40].all()) and torch.equal(full[:, 40:40 + T], mask) and bool(full[:, 40 + T:].all())
    assert out.last_hidden_state.shape == (B, 40 + T + 36, model.backbone.config.d_model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith(("prompt.", "visual_embedding."))}


# ----------------------------------------------------------------------- fidelity to the official code
def test_bart_scale_embedding_applies_sqrt_d_once_and_not_to_object_order_rows(toks):
    """Upstream: ``embed_tokens(ids) * embed_scale`` with a plain nn.Embedding (text scaled once by sqrt(d)), and
    the object-order embedding is that plain table (unscaled). With d = 16 the scale is 4."""
    model, tok = build_model("tiny-bart", "bitfit", feat_dim=FEAT, tokenizer=toks["bart"], seed=0, d_model=16,
                             scale_embedding=True)
    model.eval()
    W = model.backbone.get_input_embeddings().weight.detach()
    ids, mask, _ = _batch(tok)
    seen = {}
    hook = model.backbone.get_encoder().register_forward_pre_hook(lambda m, a, kw: seen.update(kw),
                                                                  with_kwargs=True)
    try:
        with torch.no_grad():
            model.encode(ids, mask, torch.randn(2, 49, FEAT))
    finally:
        hook.remove()
    T = ids.shape[1]
    assert torch.equal(seen["inputs_embeds"][:, :T], W[ids] * 4.0)
    ve = model.visual_embedding
    feats = torch.randn(2, 36, FEAT, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = model.embed_visual(feats)
        rows = torch.tensor([W.shape[0] - 1 - k for k in range(36)])
        expected = (ve.feat_embedding(feats) + ve.absolute_vis_pos_embedding(torch.zeros(2, 36, 5))
                    + ve.img_order_embedding.weight[0] + W[rows])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_pooled_grid_keeps_the_first_boxes_and_order_ids_of_each_image(toks):
    """Upstream's Downsample keeps ``boxes[:, :36]`` (per image for NLVR2, and the first 36 order ids of each
    image); 49-row inputs therefore give 36 (72) tokens, equal to passing none when they hold the defaults."""
    model, _ = _build("tiny-bart", "vl-pet-large", toks)
    model.eval()
    ve, B, d = model.visual_embedding, 2, model.backbone.config.d_model
    g = torch.Generator().manual_seed(5)
    one, pair = torch.randn(B, 49, FEAT, generator=g), torch.randn(B, 2, 49, FEAT, generator=g)
    img_ids = torch.tensor([0] * 49 + [1] * 49).expand(B, -1)
    obj_ids = torch.arange(49).repeat(2).expand(B, -1)
    with torch.no_grad():
        got = model.embed_visual(one, boxes=torch.zeros(B, 49, 4), obj_order_ids=torch.arange(49).expand(B, -1))
        assert got.shape == (B, 36, d) and torch.equal(got, model.embed_visual(one))
        base = model.embed_visual(pair)
        got = model.embed_visual(pair, boxes=torch.zeros(B, 98, 4), img_order_ids=img_ids, obj_order_ids=obj_ids)
        assert got.shape == (B, 72, d) and torch.equal(got, base)
        assert torch.equal(model.embed_visual(pair, boxes=torch.zeros(B, 2, 49, 4)), base)
        # non-zero boxes: only the box branch changes, and it reads rows 0..35 of each image
        boxes = torch.rand(B, 2, 49, 4, generator=g)
        kept = boxes[:, :, :36].reshape(B, 72, 4)
        area = (kept[..., 3] - kept[..., 2]) * (kept[..., 1] - kept[..., 0])
        pos = torch.cat([kept, area.unsqueeze(-1)], -1)
        expected = base - ve.absolute_vis_pos_embedding(torch.zeros(B, 72, 5)) + ve.absolute_vis_pos_embedding(pos)
        torch.testing.assert_close(model.embed_visual(pair, boxes=boxes), expected, rtol=0, atol=1e-5)
        with pytest.raises(ValueError, match="boxes has 60 rows"):
            model.embed_visual(pair, boxes=torch.zeros(B, 60, 4))


def test_bart_prompts_go_through_the_embedding_layer_norm_without_positions(toks):
    """Upstream (JointEncoder.forward): text + positions, then [prompts ; text] through layernorm_embedding."""
    model, tok = _build("tiny-bart", "prompt-tuning", toks)
    model.eval()
    enc = model.backbone.get_encoder()
    ln = enc.layernorm_embedding
    with torch.no_grad():
        ln.weight.copy_(torch.randn(ln.weight.shape))
        ln.bias.copy_(torch.randn(ln.bias.shape))
    ids, mask, _ = _batch(tok)
    B, T = ids.shape
    seen = []
    hook = ln.register_forward_hook(lambda m, a, out: seen.append((a[0], out)))
    try:
        with torch.no_grad():
            model.encode(ids, mask, torch.randn(B, 49, FEAT))
            prompts = model.prompt(B)
    finally:
        hook.remove()
    x, y = seen[0]
    assert y.shape[1] == 40 + T + 36
    torch.testing.assert_close(x[:, :40], prompts, rtol=0, atol=0)  # no position added to the prompts
    torch.testing.assert_close(y[:, :40], _ln(prompts, ln.weight, ln.bias, ln.eps), rtol=0, atol=1e-5)
    pos = enc.embed_positions.weight[2:2 + T]
    text = model.backbone.get_input_embeddings()(ids) + pos
    torch.testing.assert_close(y[:, 40:40 + T], _ln(text, ln.weight, ln.bias, ln.eps), rtol=0, atol=1e-5)
    assert torch.equal(y[:, 40 + T:], x[:, 40 + T:])  # visual tokens untouched


def test_t5_prompts_share_the_relative_bias_block_with_the_text(toks):
    """Upstream (modeling_t5.JointEncoder.forward): L = prompts + text, ``compute_bias(L, L)`` in the top-left
    L x L block, zero for every pair with a visual token."""
    model, tok = _build("tiny-t5", "prompt-tuning", toks)
    model.eval()
    sa = model.backbone.get_encoder().block[0].layer[0].SelfAttention
    ids, mask, _ = _batch(tok)
    B, T = ids.shape
    L = 40 + T
    seen = []
    hook = sa.relative_attention_bias.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            model.encode(ids, mask, torch.randn(B, 49, FEAT))
    finally:
        hook.remove()
    got = seen[0].permute(2, 0, 1)  # (heads, q, k)
    assert got.shape[1:] == (L + 36, L + 36)
    with torch.no_grad():
        expected = sa.compute_bias(L, L)[0]  # the layout is cleared after encode: the stock bias
    assert torch.equal(got[:, :L, :L], expected)
    assert not got[:, L:].any() and not got[:, :, L:].any()


@pytest.mark.parametrize("method", ["bitfit", "lora"])
def test_t5_bias_methods_train_the_relative_attention_tables(toks, method):
    """Upstream picks trainable biases with ``"bias" in name``: T5's two relative_attention_bias.weight tables
    (encoder and decoder, 32 buckets x 4 heads each in tiny-t5) are trained; T5 has no other biases."""
    model, _ = _build("tiny-t5", method, toks)
    tr = _trainable(model)
    tables = {"backbone.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
              "backbone.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"}
    others = {n for n in tr if not n.startswith("visual_embedding.") and "lora" not in n}
    assert others == tables
    assert sum(p.numel() for n, p in model.named_parameters() if n in tables) == 2 * 32 * 4
