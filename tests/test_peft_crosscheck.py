"""Cross-check vlpet's LoRA against Hugging Face ``peft`` on a tiny BART.

Both sides use r=8, alpha=16, no dropout, no bias training, targets q_proj / v_proj. We check that
1. they add the same number of LoRA parameters, equal to the hand-computed count;
2. they target the same modules (per kind: encoder self-attn, decoder self-attn, decoder cross-attn);
3. with B = 0 at init, both leave the un-adapted model's outputs unchanged;
4. a few AdamW steps lower the loss for both, and leave every frozen base weight bit-identical.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import pytest
import torch
from torch import nn
from transformers import BartForConditionalGeneration

from vlpet.backbones import architecture_config
from vlpet.build import build_model
from vlpet.config import BitFitConfig, LoRAConfig
from vlpet.modules import LoRABranch
from vlpet.tokenization import train_tokenizer

peft = pytest.importorskip("peft")

R, ALPHA = 8, 16
TARGETS = ("q_proj", "v_proj")
FEAT_DIM = 64
SEED = 0
TEXTS = [
    "what is the man holding in his hand",
    "is there a dog on the sofa",
    "how many people are in the picture",
    "what color is the car parked near the tree",
    "the woman is riding a bicycle down the street",
] * 4


def _lora_cfg() -> LoRAConfig:
    return LoRAConfig(rank=R, alpha=ALPHA, dropout=0.0, train_biases=False)


def _kind(name: str) -> str:
    """encoder-self / decoder-self / decoder-cross from a module name of a BART model."""
    if "encoder_attn" in name:
        return "decoder-cross"
    if "self_attn" in name and ".decoder." in f".{name}":
        return "decoder-self"
    if "self_attn" in name and ".encoder." in f".{name}":
        return "encoder-self"
    raise AssertionError(f"unexpected LoRA target {name}")


def _lora_param_count(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, "bart", 300)


@pytest.fixture(scope="module")
def vocab_size(tokenizer) -> int:
    return len(tokenizer)


def _plain_bart(vocab_size: int) -> BartForConditionalGeneration:
    torch.manual_seed(SEED)
    return BartForConditionalGeneration(architecture_config("tiny-bart", vocab_size=vocab_size)).eval()


def _peft_model(base: nn.Module) -> nn.Module:
    cfg = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(TARGETS), lora_dropout=0.0, bias="none")
    return peft.get_peft_model(base, cfg)


def _vlpet_model(tokenizer, method=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = build_model("tiny-bart", method or _lora_cfg(), feat_dim=FEAT_DIM, tokenizer=tokenizer, seed=SEED)
    return model


def _hand_count(vocab_size: int) -> tuple[int, Counter]:
    """Every BART attention (enc self, dec self, dec cross) has q_proj and v_proj of d -> d."""
    cfg = architecture_config("tiny-bart", vocab_size=vocab_size)
    d = cfg.d_model
    kinds = Counter({"encoder-self": 2 * cfg.encoder_layers, "decoder-self": 2 * cfg.decoder_layers,
                     "decoder-cross": 2 * cfg.decoder_layers})
    return sum(kinds.values()) * (R * d + d * R), kinds


def _text_batch(vocab_size: int, b: int = 4, t: int = 12, gen_seed: int = 1):
    g = torch.Generator().manual_seed(gen_seed)
    ids = torch.randint(4, vocab_size - 200, (b, t), generator=g)  # stay clear of specials / VL extra ids
    labels = torch.randint(4, vocab_size - 200, (b, 5), generator=g)
    labels[0, -2:] = -100
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    vis = torch.randn(b, 36, FEAT_DIM, generator=g)
    return ids, mask, labels, vis


# ---------------------------------------------------------------------------------------------- structure
def test_same_lora_parameter_count_and_targets(tokenizer, vocab_size):
    expected, expected_kinds = _hand_count(vocab_size)

    pm = _peft_model(_plain_bart(vocab_size))
    from peft.tuners.lora import LoraLayer

    peft_targets = [n for n, m in pm.named_modules() if isinstance(m, LoraLayer)]
    assert all(n.endswith(TARGETS) for n in peft_targets)
    peft_kinds = Counter(_kind(n) for n in peft_targets)
    peft_count = _lora_param_count(pm)

    vm = _vlpet_model(tokenizer)
    vl_targets = [n for n, m in vm.backbone.named_modules()
                  if isinstance(m, nn.Linear) and isinstance(getattr(m, "lora", None), LoRABranch)]
    assert all(n.endswith(TARGETS) for n in vl_targets)
    vl_kinds = Counter(_kind(n) for n in vl_targets)
    vl_count = _lora_param_count(vm)

    assert peft_count == vl_count == expected, (peft_count, vl_count, expected)
    assert peft_kinds == vl_kinds == expected_kinds, (peft_kinds, vl_kinds, expected_kinds)
    # Same module names relative to the HF model (peft wraps as base_model.model.<name>.).
    assert {n.removeprefix("base_model.model.") for n in peft_targets} == set(vl_targets)
    # Per-module shapes agree with peft's: A is (r, in), B is (out, r).
    peft_shapes = sorted((tuple(p.shape)) for n, p in pm.named_parameters() if "lora_" in n)
    vl_shapes = sorted((tuple(p.shape)) for n, p in vm.named_parameters() if "lora_" in n)
    assert peft_shapes == vl_shapes
    # Scaling alpha / r, as peft.
    scalings = {m.scaling for m in vm.modules() if isinstance(m, LoRABranch)}
    assert scalings == {ALPHA / R}
    # With train_biases=False, vlpet's trainable set is LoRA plus the visual projector, nothing of the backbone.
    trainable_backbone = [n for n, p in vm.backbone.named_parameters() if p.requires_grad and "lora_" not in n]
    assert trainable_backbone == []


# ---------------------------------------------------------------------------------------------- B = 0 at init
def test_zero_init_leaves_outputs_unchanged(tokenizer, vocab_size):
    ids, mask, labels, vis = _text_batch(vocab_size)
    dec = labels.masked_fill(labels == -100, 1)

    # peft: compare with the same base model before wrapping.
    base = _plain_bart(vocab_size)
    with torch.no_grad():
        ref = base(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    pm = _peft_model(copy.deepcopy(base)).eval()
    assert all(torch.count_nonzero(p) == 0 for n, p in pm.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        out = pm(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0)

    # vlpet: every LoRA branch outputs exactly zero, and the model equals the un-adapted one (same seed,
    # no PET module in the backbone: BitFit's structure) on the same input.
    vm = _vlpet_model(tokenizer).eval()
    assert all(torch.count_nonzero(p) == 0 for n, p in vm.named_parameters() if "lora_B" in n)
    branch_outs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _a, o: branch_outs.append(o.detach()))
             for m in vm.modules() if isinstance(m, LoRABranch)]
    with torch.no_grad():
        out = vm(ids, vis, mask, labels=labels)["logits"]
    for h in hooks:
        h.remove()
    _, expected_kinds = _hand_count(vocab_size)
    assert len(branch_outs) == sum(expected_kinds.values())
    assert all(torch.count_nonzero(o) == 0 for o in branch_outs)

    plain = _vlpet_model(tokenizer, BitFitConfig()).eval()
    shared = {n: p for n, p in plain.state_dict().items()}
    own = {n: p for n, p in vm.state_dict().items() if "lora_" not in n}
    assert own.keys() == shared.keys()
    assert all(torch.equal(own[n], shared[n]) for n in own), "same seed should give the same base weights"
    with torch.no_grad():
        ref = plain(ids, vis, mask, labels=labels)["logits"]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- training
def _train(model: nn.Module, loss_fn, steps: int = 5, lr: float = 1e-2) -> tuple[float, float]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.eval()  # deterministic (no dropout); gradients still flow
    with torch.no_grad():
        before = loss_fn().item()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = loss_fn().item()
    return before, after


def _frozen_snapshot(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if n.startswith(prefix) and "lora_" not in n}


def test_training_lowers_loss_and_keeps_base_frozen(tokenizer, vocab_size):
    torch.manual_seed(SEED)
    ids, mask, labels, vis = _text_batch(vocab_size)

    pm = _peft_model(_plain_bart(vocab_size))
    assert all(("lora_" in n) == p.requires_grad for n, p in pm.named_parameters())
    frozen = _frozen_snapshot(pm)
    assert frozen
    lora_before = {n: p.detach().clone() for n, p in pm.named_parameters() if "lora_" in n}
    before, after = _train(pm, lambda: pm(input_ids=ids, attention_mask=mask, labels=labels).loss)
    assert after < before, ("peft", before, after)
    assert all(torch.equal(p, frozen[n]) for n, p in pm.named_parameters() if n in frozen)
    assert any(not torch.equal(p, lora_before[n]) for n, p in pm.named_parameters() if "lora_B" in n)

    vm = _vlpet_model(tokenizer)
    assert all(("lora_" in n) == p.requires_grad for n, p in vm.backbone.named_parameters())
    frozen = _frozen_snapshot(vm, "backbone.")
    assert frozen
    lora_before = {n: p.detach().clone() for n, p in vm.named_parameters() if "lora_" in n}
    before, after = _train(vm, lambda: vm(ids, vis, mask, labels=labels)["loss"])
    assert after < before, ("vlpet", before, after)
    assert all(torch.equal(p, frozen[n]) for n, p in vm.named_parameters() if n in frozen)
    assert all(not torch.equal(p, lora_before[n]) for n, p in vm.named_parameters() if "lora_B" in n)
