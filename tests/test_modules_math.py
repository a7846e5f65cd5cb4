"""Math of the PET building blocks (docs/method.md §1-2), checked against hand-computed expectations.

Every expected value here is written out from the formulas in docs/method.md §1-2 (explicit sigmoid, explicit tanh-GELU,
explicit concatenations / Kronecker products), never captured from the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vlpet.modules import (
    BottleneckAdapter,
    GatedModification,
    LargeGate,
    LoRABranch,
    MiddleXGate,
    MiddleYGate,
    MultiHeadAdapter,
    PHMLinear,
    PromptEncoder,
    SmallGate,
)

DT = torch.float64


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written out by hand."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _set(linear: nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))


# ----------------------------------------------------------------------------------------------- 1. gates
@pytest.fixture
def xh():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, generator=g, dtype=DT)
    h = torch.randn(2, 3, 4, generator=g, dtype=DT)
    return x, h


def test_large_gate_matches_hand_formula(xh):
    x, h = xh
    gate = LargeGate(4, 3).to(DT)
    wd = [[0.5, -1.0, 0.25, 0.0], [1.5, 0.5, -0.5, 1.0], [-0.2, 0.3, 0.7, -1.1]]
    bd = [0.1, -0.2, 0.3]
    wu = [[1.0, -0.5, 0.2], [0.0, 2.0, -1.0], [0.3, 0.3, 0.3], [-1.2, 0.4, 0.9]]
    bu = [0.05, -0.1, 0.0, 0.2]
    _set(gate.down, wd, bd)
    _set(gate.up, wu, bu)
    out = gate(x, h)
    assert out.shape == (2, 3, 4)
    expected = torch.empty(2, 3, 4, dtype=DT)
    for b in range(2):
        for n in range(3):
            xv = x[b, n]
            hidden = [sum(wd[k][c] * xv[c].item() for c in range(4)) + bd[k] for k in range(3)]
            hidden = [gelu_tanh(torch.tensor(v, dtype=DT)).item() for v in hidden]
            for c in range(4):
                expected[b, n, c] = sig(sum(wu[c][k] * hidden[k] for k in range(3)) + bu[c])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # G depends on X only (not on H + ΔH)
    torch.testing.assert_close(gate(x, torch.zeros_like(h)), expected, rtol=0, atol=1e-12)


def test_middlex_gate_is_one_scalar_per_token(xh):
    x, h = xh
    gate = MiddleXGate(4).to(DT)
    w, b0 = [0.3, -0.7, 1.1, 0.2], 0.4
    _set(gate.proj, [w], [b0])
    out = gate(x, h)
    assert out.shape == (2, 3, 1)
    s = x + h
    expected = torch.tensor([[[sig(sum(w[c] * s[b, n, c].item() for c in range(4)) + b0)]
                              for n in range(3)] for b in range(2)], dtype=DT)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # broadcast: one value per token, shared over channels
    prod = out * h
    for c in range(4):
        torch.testing.assert_close(prod[..., c], expected[..., 0] * h[..., c], rtol=0, atol=1e-12)


def test_middley_gate_is_one_plus_z_without_sigmoid(xh):
    x, h = xh
    gate = MiddleYGate(4).to(DT)
    with torch.no_grad():
        gate.z.copy_(torch.tensor([-3.0, 0.0, 0.5, 2.0], dtype=DT))
    out = gate(x, h)
    assert out.shape == (4,)
    torch.testing.assert_close(out, torch.tensor([-2.0, 1.0, 1.5, 3.0], dtype=DT), rtol=0, atol=0)
    # shared over tokens: G ⊙ h scales channel c of every token by 1 + z_c
    prod = out * h
    for c, g in enumerate([-2.0, 1.0, 1.5, 3.0]):
        torch.testing.assert_close(prod[..., c], g * h[..., c], rtol=0, atol=0)
    # the default (zero) z gives the identity gate
    assert torch.equal(MiddleYGate(4)(x.float(), h.float()), torch.ones(4))


def test_small_gate_is_mean_over_all_positions_including_padding(xh):
    x, h = xh
    x = x.clone()
    x[1, 2] = 0.0  # a "padded" position: still counted in the mean
    gate = SmallGate(4).to(DT)
    w = [0.2, -0.4, 0.6, 0.1, -0.3, 0.5, 0.25, -0.15]  # first 4 act on X, last 4 on H + ΔH
    b0 = -0.05
    _set(gate.proj, [w], [b0])
    out = gate(x, h)
    assert out.shape == (2, 1, 1)
    for b in range(2):
        vals = []
        for n in range(3):
            cat = list(x[b, n].tolist()) + list(h[b, n].tolist())
            vals.append(sig(sum(wi * ci for wi, ci in zip(w, cat)) + b0))
        assert out[b, 0, 0].item() == pytest.approx(sum(vals) / 3, abs=1e-12)
    # explicitly: the mean over the two non-padded positions alone is a different number
    cat = [list(x[1, n].tolist()) + list(h[1, n].tolist()) for n in range(2)]
    unpadded = sum(sig(sum(wi * ci for wi, ci in zip(w, c)) + b0) for c in cat) / 2
    assert out[1, 0, 0].item() != pytest.approx(unpadded, abs=1e-9)


# ------------------------------------------------------------------------------------ 2. GatedModification
class _AffineDelta(nn.Module):
    """ΔH = 2·H + 1, a hand-set modification."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return 2.0 * h + 1.0


def test_gated_modification_formula(xh):
    x, h = xh
    gate = MiddleYGate(4).to(DT)
    with torch.no_grad():
        gate.z.copy_(torch.tensor([-3.0, 0.0, 0.5, 2.0], dtype=DT))
    G = torch.tensor([-2.0, 1.0, 1.5, 3.0], dtype=DT)
    hd = h + (2.0 * h + 1.0)  # H + ΔH = 3H + 1

    out = GatedModification(_AffineDelta(), gate, scale=0.3)(x, h)
    torch.testing.assert_close(out, 0.3 * G * hd, rtol=0, atol=1e-12)

    out = GatedModification(_AffineDelta(), gate, scale=1.0)(x, h)
    torch.testing.assert_close(out, G * hd, rtol=0, atol=1e-12)

    # plain sequential adapter: gate None, s = 1 → H + ΔH
    out = GatedModification(_AffineDelta(), None, scale=1.0)(x, h)
    torch.testing.assert_close(out, 3.0 * h + 1.0, rtol=0, atol=1e-12)

    # gate None with a scale
    out = GatedModification(_AffineDelta(), None, scale=0.3)(x, h)
    torch.testing.assert_close(out, 0.3 * (3.0 * h + 1.0), rtol=0, atol=1e-12)

    # gate alone (no delta)
    out = GatedModification(None, gate, scale=0.3)(x, h)
    torch.testing.assert_close(out, 0.3 * G * h, rtol=0, atol=1e-12)


def test_gated_modification_middlex_uses_modified_h(xh):
    """Spec §1: the middleX gate reads X + (H + ΔH), the already-modified output."""
    x, h = xh
    gate = MiddleXGate(4).to(DT)
    w, b0 = [0.3, -0.7, 1.1, 0.2], 0.4
    _set(gate.proj, [w], [b0])
    hd = 3.0 * h + 1.0
    s = x + hd
    G = torch.tensor([[[sig(sum(w[c] * s[b, n, c].item() for c in range(4)) + b0)]
                       for n in range(3)] for b in range(2)], dtype=DT)
    out = GatedModification(_AffineDelta(), gate, scale=0.3)(x, h)
    torch.testing.assert_close(out, 0.3 * G * hd, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------- 3. multi-head adapters
D, R, NH = 8, 8, 4  # head_r = 2, head_d = 2


def _rand_like_params(m: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.fixture
def x8():
    return torch.randn(2, 5, D, generator=torch.Generator().manual_seed(3), dtype=DT)


def test_multihead_down_equals_bottleneck(x8):
    mh = MultiHeadAdapter(D, R, NH, "down").to(DT)
    _rand_like_params(mh, 1)
    assert len(mh.down) == NH and len(mh.up) == 1
    bn = BottleneckAdapter(D, R).to(DT)
    with torch.no_grad():
        bn.down.weight.copy_(torch.cat([mh.down[i].weight for i in range(NH)], 0))
        bn.down.bias.copy_(torch.cat([mh.down[i].bias for i in range(NH)], 0))
        bn.up.weight.copy_(mh.up[0].weight)
        bn.up.bias.copy_(mh.up[0].bias)
    torch.testing.assert_close(mh(x8), bn(x8), rtol=0, atol=1e-12)
    # and both equal up(gelu_tanh(down(x))) written out
    z = gelu_tanh(x8 @ bn.down.weight.T + bn.down.bias)
    torch.testing.assert_close(mh(x8), z @ bn.up.weight.T + bn.up.bias, rtol=0, atol=1e-12)


def test_multihead_up_equals_bottleneck(x8):
    mh = MultiHeadAdapter(D, R, NH, "up").to(DT)
    _rand_like_params(mh, 2)
    assert len(mh.down) == 1 and len(mh.up) == NH
    bn = BottleneckAdapter(D, R).to(DT)
    with torch.no_grad():
        bn.down.weight.copy_(mh.down[0].weight)
        bn.down.bias.copy_(mh.down[0].bias)
        bn.up.weight.copy_(torch.cat([mh.up[i].weight for i in range(NH)], 0))
        bn.up.bias.copy_(torch.cat([mh.up[i].bias for i in range(NH)], 0))
    torch.testing.assert_close(mh(x8), bn(x8), rtol=0, atol=1e-12)


def test_multihead_down_up_equals_bottleneck(x8):
    mh = MultiHeadAdapter(D, R, NH, "down-up").to(DT)
    _rand_like_params(mh, 3)
    assert len(mh.down) == NH and len(mh.up) == NH
    bn = BottleneckAdapter(D, R).to(DT)
    with torch.no_grad():
        bn.down.weight.copy_(torch.cat([mh.down[i].weight for i in range(NH)], 0))
        bn.down.bias.copy_(torch.cat([mh.down[i].bias for i in range(NH)], 0))
        bn.up.weight.copy_(torch.cat([mh.up[i].weight for i in range(NH)], 0))
        bn.up.bias.copy_(torch.cat([mh.up[i].bias for i in range(NH)], 0))
    torch.testing.assert_close(mh(x8), bn(x8), rtol=0, atol=1e-12)


def test_multihead_down_up_pair_is_block_diagonal(x8):
    mh = MultiHeadAdapter(D, R, NH, "down-up-pair").to(DT)
    _rand_like_params(mh, 4)
    hr, hd = R // NH, D // NH
    assert all(m.weight.shape == (hd, hr) for m in mh.up)
    out = mh(x8)

    # by hand: head i maps its own slice of z to its own slice of the output
    z = torch.cat([x8 @ mh.down[i].weight.T + mh.down[i].bias for i in range(NH)], -1)
    z = gelu_tanh(z)
    pieces = [z[..., i * hr:(i + 1) * hr] @ mh.up[i].weight.T + mh.up[i].bias for i in range(NH)]
    torch.testing.assert_close(out, torch.cat(pieces, -1), rtol=0, atol=1e-12)

    # = a bottleneck whose up-projection is the block-diagonal matrix of the head ups
    w_bd = torch.zeros(D, R, dtype=DT)
    for i in range(NH):
        w_bd[i * hd:(i + 1) * hd, i * hr:(i + 1) * hr] = mh.up[i].weight.detach()
    b_up = torch.cat([mh.up[i].bias.detach() for i in range(NH)])
    torch.testing.assert_close(out, z @ w_bd.T + b_up, rtol=0, atol=1e-12)

    # ... and NOT a general (dense) bottleneck: a dense up with the same diagonal blocks differs
    w_dense = w_bd + torch.randn(D, R, generator=torch.Generator().manual_seed(9), dtype=DT) * (w_bd == 0)
    dense = z @ w_dense.T + b_up
    assert (dense - out).abs().max() > 1e-3
    # structural check: perturbing head 0's hidden slice only changes output head 0's slice
    z2 = z.clone()
    z2[..., :hr] += 1.0
    out2 = z2 @ w_bd.T + b_up
    torch.testing.assert_close(out2[..., hd:], out[..., hd:].detach(), rtol=0, atol=1e-12)
    assert (out2[..., :hd] - out[..., :hd]).abs().max() > 1e-3


def test_multihead_parameter_counts():
    # d = 768, r = 96, N_h = 4: 4·(768·24 + 24) + (96·768 + 768) = 2·768·96 + 96 + 768
    expected = 2 * 768 * 96 + 96 + 768
    assert expected == 148_320
    assert n_params(MultiHeadAdapter(768, 96, 4, "down")) == 148_320
    assert n_params(BottleneckAdapter(768, 96)) == 148_320
    # up: (768·96 + 96) + 4·(96·192 + 192); down-up: 4·(768·24+24) + 4·(96·192+192)
    assert n_params(MultiHeadAdapter(768, 96, 4, "up")) == 768 * 96 + 96 + 4 * (96 * 192 + 192) == 148_320
    assert n_params(MultiHeadAdapter(768, 96, 4, "down-up")) == 148_320
    # down-up-pair: 4·(768·24 + 24) + 4·(24·192 + 192)
    assert n_params(MultiHeadAdapter(768, 96, 4, "down-up-pair")) == 4 * (768 * 24 + 24) + 4 * (24 * 192 + 192)


def test_multihead_rejects_indivisible_rank():
    with pytest.raises(ValueError):
        MultiHeadAdapter(8, 6, 4, "down")


# ----------------------------------------------------------------------------------------------- 4. PHM
def test_phm_weight_is_sum_of_kronecker_products():
    phm = PHMLinear(4, 6, 2).to(DT)
    _rand_like_params(phm, 5)
    expected_w = sum(torch.kron(phm.phm_rule[i], phm.W[i]) for i in range(2))
    w = phm.weight()
    assert w.shape == (4, 6)
    torch.testing.assert_close(w, expected_w, rtol=0, atol=1e-12)

    # one entry written out by hand: row 3 = (block 1, p 1), col 4 = (block 1, q 1)
    a, b = phm.phm_rule.detach(), phm.W.detach()
    by_hand = a[0, 1, 1] * b[0, 1, 1] + a[1, 1, 1] * b[1, 1, 1]
    assert w[3, 4].item() == pytest.approx(by_hand.item(), abs=1e-12)
    # row 0, col 3 = (block 0, p 0), (block 1, q 0)
    by_hand = a[0, 0, 1] * b[0, 0, 0] + a[1, 0, 1] * b[1, 0, 0]
    assert w[0, 3].item() == pytest.approx(by_hand.item(), abs=1e-12)

    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(6), dtype=DT)
    torch.testing.assert_close(phm(x), x @ expected_w + phm.bias, rtol=0, atol=1e-12)


def test_phm_parameter_count():
    # n³ rule + n·(in/n)·(out/n) + out
    assert n_params(PHMLinear(768, 96, 2)) == 8 + 2 * 384 * 48 + 96


# ----------------------------------------------------------------------------------------------- 5. LoRA
def test_lora_branch_zero_at_init_and_scaling():
    lora = LoRABranch(5, 3, rank=2, alpha=8.0)
    assert lora.scaling == 4.0
    assert torch.equal(lora.lora_B, torch.zeros(3, 2))
    assert lora.lora_A.abs().sum() > 0  # A is random
    x = torch.randn(4, 5)
    assert torch.equal(lora(x), torch.zeros(4, 3))

    lora = LoRABranch(5, 3, rank=2, alpha=8.0).to(DT)
    A = torch.tensor([[1.0, 0.0, -1.0, 2.0, 0.5], [0.0, 1.0, 1.0, -0.5, 0.0]], dtype=DT)
    B = torch.tensor([[1.0, 2.0], [-1.0, 0.0], [0.5, 0.5]], dtype=DT)
    with torch.no_grad():
        lora.lora_A.copy_(A)
        lora.lora_B.copy_(B)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(7), dtype=DT)
    torch.testing.assert_close(lora(x), 4.0 * x @ A.T @ B.T, rtol=0, atol=1e-12)
    # by hand for one row: (BA) x
    BA = [[sum(B[o, k].item() * A[k, i].item() for k in range(2)) for i in range(5)] for o in range(3)]
    row = [4.0 * sum(BA[o][i] * x[0, i].item() for i in range(5)) for o in range(3)]
    torch.testing.assert_close(lora(x)[0], torch.tensor(row, dtype=DT), rtol=0, atol=1e-12)


def test_lora_dropout_inactive_in_eval():
    lora = LoRABranch(5, 3, rank=2, alpha=2.0, dropout=0.5).to(DT)
    with torch.no_grad():
        lora.lora_B.fill_(1.0)
    lora.eval()
    x = torch.randn(4, 5, dtype=DT)
    torch.testing.assert_close(lora(x), 1.0 * x @ lora.lora_A.T @ lora.lora_B.T, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- 6. prompt
def test_prompt_encoder_shape_and_reparameterisation():
    pe = PromptEncoder(length=3, dim=4, mid_dim=5).to(DT)
    out = pe(2)
    assert out.shape == (2, 3, 4)
    e = pe.embedding.weight
    l1, l2 = pe.mlp[0], pe.mlp[2]
    expected = torch.tanh(e @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias
    for b in range(2):
        torch.testing.assert_close(out[b], expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- 7. initialisation in built models
@pytest.fixture(scope="module")
def t5_tok():
    from vlpet.tokenization import train_tokenizer

    return train_tokenizer(["what is on the table", "a man riding a horse", "is it raining"] * 4, "t5",
                           vocab_size=300)


@pytest.fixture(scope="module")
def bart_tok():
    from vlpet.tokenization import train_tokenizer

    return train_tokenizer(["what is on the table", "a man riding a horse", "is it raining"] * 4, "bart",
                           vocab_size=300)


@pytest.mark.parametrize("method, factor", [("vl-pet-large", 0.15), ("vl-pet-middlex", 0.15),
                                            ("vl-pet-middley", 0.3), ("vl-pet-small", 0.15)])
def test_t5_zero_init_output_scale(t5_tok, method, factor):
    from vlpet.build import build_model

    model, _ = build_model("tiny-t5", method, feat_dim=64, tokenizer=t5_tok, seed=0)
    enc = model.backbone.get_encoder()
    d = model.backbone.config.d_model
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 7, d, generator=g)
    h = torch.randn(2, 7, d, generator=g)
    for block in enc.block:
        for mod in (block.layer[0].pet_attn, block.layer[-1].pet_ffn):
            assert isinstance(mod, GatedModification)
            assert mod.scale == pytest.approx(0.3)
            with torch.no_grad():
                out = mod(x, h)
            assert torch.equal(out, factor * h), (method, (out - factor * h).abs().max())


@pytest.mark.parametrize("method", ["vl-pet-large", "vl-pet-middley"])
def test_bart_init_is_hf_normal(bart_tok, method):
    from vlpet.build import build_model

    model, _ = build_model("tiny-bart", method, feat_dim=64, tokenizer=bart_tok, seed=0)
    mods = [m for layer in model.backbone.get_encoder().layers for m in (layer.pet_attn, layer.pet_ffn)]
    assert mods and all(m.scale == 1.0 for m in mods)
    if method == "vl-pet-large":
        ws, bs = [], []
        for m in mods:
            for lin in (m.gate.down, m.gate.up, m.delta.up[0], *m.delta.down):
                ws.append(lin.weight.detach().flatten())
                bs.append(lin.bias.detach())
        w = torch.cat(ws)
        assert w.numel() > 10_000
        assert 0.017 < w.std().item() < 0.023
        assert abs(w.mean().item()) < 0.002
        assert torch.equal(torch.cat(bs), torch.zeros(sum(b.numel() for b in bs)))
        # BART: no zero-init of the adapter up-projection, so ΔH ≠ 0 and G ≈ 0.5 at step 0
        x = torch.randn(2, 5, model.backbone.config.d_model)
        with torch.no_grad():
            gate = mods[0].gate(x, x)
        assert (gate - 0.5).abs().max() < 0.1
    else:
        z = torch.cat([m.gate.z.detach() for m in mods])
        assert not torch.equal(z, torch.zeros_like(z))
        assert z.abs().max() < 0.15
        assert 0.012 < z.std().item() < 0.028
