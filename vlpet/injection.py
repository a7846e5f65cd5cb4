"""Attach PET modules to a loaded Hugging Face BART/T5 model without forking its modeling code.

Like ``peft``, we leave the stock modules in place; unlike ``peft``'s module swapping, we attach the new
modules as children of the layer they modify and apply them with forward hooks, so every original
state-dict key (and so every pretrained checkpoint) stays valid. The hook points, per backbone:

| where                         | BART (``BartEncoderLayer`` / ``BartDecoderLayer``) | T5 (``T5Block.layer[i]``)            |
|-------------------------------|----------------------------------------------------|--------------------------------------|
| encoder self-attention: X, H  | input / output[0] of ``self_attn``                 | input of ``layer[0]`` / ``SelfAttention`` output[0] |
| encoder FFN: X, H             | input of ``fc1`` / output of ``fc2``               | input of ``layer[-1]`` / ``DenseReluDense`` output |
| decoder VPA                   | ``encoder_attn.v_proj`` output                     | ``EncDecAttention.v`` output         |
| decoder sequential adapters   | ``self_attn``, ``encoder_attn``, ``fc2`` outputs   | ``SelfAttention``, ``EncDecAttention``, ``DenseReluDense`` |
| LoRA                          | ``q_proj`` / ``v_proj`` of every attention         | ``q`` / ``v`` of every attention     |

Every sub-layer output is modified before the backbone's own dropout and residual (and BART's post-LN),
which is where the official code applies H' = s·G⊙(H+ΔH).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlpet.config import Family, PETPlan
from vlpet.modules import (
    BottleneckAdapter,
    GatedModification,
    LoRABranch,
    MultiHeadAdapter,
    PHMAdapter,
    make_gate,
)
from vlpet.modules.gates import MiddleYGate

PET_PREFIXES = ("pet_", "lora")


@dataclass
class Site:
    """One place a sub-layer module goes: X comes from ``x_module``'s input, H from ``h_module``'s output."""

    owner: nn.Module  # the module the PET module is registered on
    name: str  # attribute name of the PET module on ``owner``
    x_module: nn.Module
    h_module: nn.Module
    h_is_tuple: bool


def _first_tensor(args: tuple, kwargs: dict[str, Any]) -> torch.Tensor:
    if args:
        return args[0]
    return kwargs["hidden_states"]


def _attach_sublayer(site: Site, module: GatedModification) -> None:
    site.owner.add_module(site.name, module)

    def stash_x(_m: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        module._x = _first_tensor(args, kwargs)

    def apply(_m: nn.Module, _args: tuple, _kwargs: dict[str, Any], output: Any) -> Any:
        x = module.__dict__.pop("_x", None)
        h = output[0] if site.h_is_tuple else output
        if x is None:
            x = h  # only possible when h_module is called outside its layer; the modules that read X
            # are then given H, which we never do ourselves
        h_new = module(x, h)
        return (h_new, *output[1:]) if site.h_is_tuple else h_new

    site.x_module.register_forward_pre_hook(stash_x, with_kwargs=True)
    site.h_module.register_forward_hook(apply, with_kwargs=True)


def _attach_parallel(linear: nn.Linear, name: str, branch: nn.Module) -> None:
    """out = linear(x) + branch(x): the VPA and LoRA."""
    linear.add_module(name, branch)

    def add(_m: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + branch(args[0])

    linear.register_forward_hook(add)


def _bart_layers(hf: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    return list(hf.get_encoder().layers), list(hf.get_decoder().layers)


def _t5_blocks(hf: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    return list(hf.get_encoder().block), list(hf.get_decoder().block)


def encoder_sites(hf: nn.Module, family: Family) -> Iterator[Site]:
    if family == "bart":
        for layer in _bart_layers(hf)[0]:
            yield Site(layer, "pet_attn", layer.self_attn, layer.self_attn, True)
            yield Site(layer, "pet_ffn", layer.fc1, layer.fc2, False)
    else:
        for block in _t5_blocks(hf)[0]:
            attn, ff = block.layer[0], block.layer[-1]
            yield Site(attn, "pet_attn", attn, attn.SelfAttention, True)
            yield Site(ff, "pet_ffn", ff, ff.DenseReluDense, False)


def decoder_sites(hf: nn.Module, family: Family, which: str) -> Iterator[Site]:
    """Sequential adapter sites in the decoder: ``all`` (self-attn, cross-attn, FFN) or ``cross``."""
    if family == "bart":
        for layer in _bart_layers(hf)[1]:
            if which == "all":
                yield Site(layer, "pet_self", layer.self_attn, layer.self_attn, True)
            yield Site(layer, "pet_cross", layer.encoder_attn, layer.encoder_attn, True)
            if which == "all":
                yield Site(layer, "pet_ffn", layer.fc1, layer.fc2, False)
    else:
        for block in _t5_blocks(hf)[1]:
            sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
            if which == "all":
                yield Site(sa, "pet_self", sa, sa.SelfAttention, True)
            yield Site(ca, "pet_cross", ca, ca.EncDecAttention, True)
            if which == "all":
                yield Site(ff, "pet_ffn", ff, ff.DenseReluDense, False)


def cross_value_projections(hf: nn.Module, family: Family) -> list[nn.Linear]:
    if family == "bart":
        return [layer.encoder_attn.v_proj for layer in _bart_layers(hf)[1]]
    return [block.layer[1].EncDecAttention.v for block in _t5_blocks(hf)[1]]


def attention_qv(hf: nn.Module, family: Family) -> list[nn.Linear]:
    """q and v projections of every attention: encoder self, decoder self and decoder cross."""
    from transformers.models.bart.modeling_bart import BartAttention
    from transformers.models.t5.modeling_t5 import T5Attention

    out: list[nn.Linear] = []
    for m in hf.modules():
        if family == "bart" and isinstance(m, BartAttention):
            out += [m.q_proj, m.v_proj]
        elif family == "t5" and isinstance(m, T5Attention):
            out += [m.q, m.v]
    return out


def _delta(plan: PETPlan, d: int) -> nn.Module | None:
    if plan.encoder_delta == "multihead":
        return MultiHeadAdapter(d, plan.encoder_rank, plan.encoder_heads, plan.multihead_variant)
    if plan.encoder_delta == "adapter":
        return BottleneckAdapter(d, plan.encoder_rank)
    if plan.encoder_delta == "phm":
        return PHMAdapter(d, plan.encoder_rank, plan.phm_dim)
    return None


def _decoder_delta(plan: PETPlan, d: int) -> nn.Module:
    if plan.encoder_delta == "phm":
        return PHMAdapter(d, plan.decoder_rank, plan.phm_dim)
    return BottleneckAdapter(d, plan.decoder_rank)


def init_new_module(module: nn.Module, init_style: Family, std: float = 0.02) -> None:
    """BART: HF's init for new layers, N(0, std²) weights and zero biases (also MiddleY's z).
    T5: HF's T5 init does not touch plain nn.Linear/nn.Embedding, so they keep PyTorch's defaults."""
    if init_style != "bart":
        return
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, MiddleYGate):
            nn.init.normal_(m.z, std=std)


def inject(hf: nn.Module, family: Family, plan: PETPlan) -> dict[str, int]:
    """Build and attach every module of ``plan`` to ``hf`` in place; returns counts per kind of module."""
    d = hf.config.d_model
    counts = {"encoder": 0, "decoder": 0, "vpa": 0, "lora": 0}
    if plan.encoder_delta is not None or plan.gate is not None:
        for site in encoder_sites(hf, family):
            delta = _delta(plan, d)
            gate = make_gate(plan.gate, d, plan.gate_dim) if plan.gate else None
            module = GatedModification(delta, gate, plan.scale)
            init_new_module(module, plan.init_style)
            if plan.zero_init:
                if delta is not None:
                    delta.zero_init_up()
                if gate is not None:
                    gate.zero_init()
            _attach_sublayer(site, module)
            counts["encoder"] += 1
    if plan.decoder == "vpa":
        for v in cross_value_projections(hf, family):
            vpa = BottleneckAdapter(d, plan.decoder_rank)
            init_new_module(vpa, plan.init_style)
            if plan.zero_init:
                vpa.zero_init_up()
            _attach_parallel(v, "pet_vpa", vpa)
            counts["vpa"] += 1
    elif plan.decoder in ("sequential-all", "sequential-cross"):
        for site in decoder_sites(hf, family, "all" if plan.decoder == "sequential-all" else "cross"):
            module = GatedModification(_decoder_delta(plan, d), None, 1.0)
            init_new_module(module, plan.init_style)
            _attach_sublayer(site, module)
            counts["decoder"] += 1
    if plan.lora_rank:
        for lin in attention_qv(hf, family):
            _attach_parallel(lin, "lora", LoRABranch(lin.in_features, lin.out_features, plan.lora_rank,
                                                     plan.lora_alpha, plan.lora_dropout))
            counts["lora"] += 1
    return counts


def is_pet_parameter(name: str) -> bool:
    return any(part.startswith(PET_PREFIXES) for part in name.split("."))


def is_encoder_layer_norm(name: str) -> bool:
    """The official ``--unfreeze_encoder_layer_norms`` rule: ``encoder.`` and ``layer_norm``/``layernorm``."""
    low = name.lower()
    return "encoder." in low and ("layer_norm" in low or "layernorm" in low)


def is_layer_norm(name: str) -> bool:
    low = name.lower()
    return "layer_norm" in low or "layernorm" in low
