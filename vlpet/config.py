"""User-facing configs for every PET method (pydantic), and the internal plan each one compiles to.

A method config says *what* the user asked for (the paper's flags); ``plan()`` turns it, given the
backbone family, into a ``PETPlan``: which modules go where and what is trainable. Every method is a
composition of the same few parts (encoder sub-layer modules, decoder modules, LoRA, prompts, trainable
rules), so the paper's transfer designs ("+G + LW") are plans, not copies of code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlpet.modules.adapters import MultiHeadVariant
from vlpet.modules.gates import Granularity

Family = Literal["bart", "t5"]
EncoderDelta = Literal["multihead", "adapter", "phm"]
DecoderMode = Literal["none", "vpa", "sequential-all", "sequential-cross"]


@dataclass(frozen=True)
class PETPlan:
    """What ``apply_method`` builds. Defaults describe a frozen backbone with nothing added."""

    encoder_delta: EncoderDelta | None = None
    encoder_rank: int = 0
    encoder_heads: int = 1
    multihead_variant: MultiHeadVariant = "down"
    phm_dim: int = 2
    gate: Granularity | None = None
    gate_dim: int | None = None
    scale: float = 1.0
    decoder: DecoderMode = "none"
    decoder_rank: int = 0
    lora_rank: int = 0
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    prompt_length: int = 0
    prompt_mid_dim: int = 0
    init_style: Family = "bart"
    zero_init: bool = False
    train_encoder_layer_norms: bool = False
    train_all_layer_norms: bool = False
    train_biases: bool = False
    train_everything: bool = False
    train_visual_embedding: bool = True
    use_task_prompts: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


class _MethodBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    freeze_visual_embedding: bool = False

    def plan(self, family: Family, d_model: int) -> PETPlan:  # pragma: no cover - abstract
        raise NotImplementedError


def _default_rank(family: Family, d_model: int) -> int:
    """The scripts' adapter rank: 96 for BART-base and 192 for T5-base, i.e. d/8 and d/4."""
    return d_model // 8 if family == "bart" else d_model // 4


class VLPETConfig(_MethodBase):
    """VL-PET: multi-head modular modification + granularity-controlled gate in every encoder sub-layer,
    and a parallel adapter on the decoder cross-attention value projection (docs/method.md §1-3).

    ``None`` fields take the official scripts' per-backbone values: r = g = 96 (BART) / 192 (T5),
    VPA 96 for both, s = 1 (BART) / 0.3 (T5), zero-inits on for T5 only. On other widths the ranks keep
    the same ratio to d (r = d/8 BART, d/4 T5; VPA d/8).
    """

    method: Literal["vl-pet"] = "vl-pet"
    granularity: Granularity = "large"
    adapter_dim: int | None = None
    num_heads: int = 4
    multihead: MultiHeadVariant = "down"
    gate_dim: int | None = None
    scale: float | None = None
    decoder_vpa_dim: int | None = None
    zero_init: bool | None = None

    def plan(self, family: Family, d_model: int) -> PETPlan:
        r = self.adapter_dim or _default_rank(family, d_model)
        return PETPlan(
            encoder_delta="multihead",
            encoder_rank=r,
            encoder_heads=self.num_heads,
            multihead_variant=self.multihead,
            gate=self.granularity,
            gate_dim=(self.gate_dim or r) if self.granularity == "large" else None,
            scale=self.scale if self.scale is not None else (1.0 if family == "bart" else 0.3),
            decoder="vpa",
            decoder_rank=self.decoder_vpa_dim or d_model // 8,
            init_style=family,
            zero_init=self.zero_init if self.zero_init is not None else family == "t5",
            train_encoder_layer_norms=True,
            train_visual_embedding=not self.freeze_visual_embedding,
        )


class AdapterConfig(_MethodBase):
    """VL-Adapter (sequential bottleneck adapters, one set shared across tasks), optionally with the
    paper's transfer design: ``gate`` adds G to the encoder modules and ``lightweight_decoder`` keeps only
    the cross-attention adapters in the decoder, with encoder LNs trainable (paper Table 9, issue #4)."""

    method: Literal["adapter"] = "adapter"
    reduction_factor: int = 8
    gate: Granularity | None = None
    gate_dim: int | None = None
    lightweight_decoder: bool = False

    def _rank(self, d_model: int) -> int:
        return d_model // self.reduction_factor

    def plan(self, family: Family, d_model: int) -> PETPlan:
        r = self._rank(d_model)
        lw = self.lightweight_decoder
        return PETPlan(
            encoder_delta="adapter",
            encoder_rank=r,
            gate=self.gate,
            gate_dim=(self.gate_dim or r) if self.gate == "large" else None,
            decoder="sequential-cross" if lw else "sequential-all",
            decoder_rank=r,
            init_style=family,
            train_encoder_layer_norms=lw,
            train_all_layer_norms=not lw,
            train_visual_embedding=not self.freeze_visual_embedding,
        )


class CompacterConfig(AdapterConfig):
    """Compacter: PHM adapters at the adapter positions (hypercomplex division 2, per-layer rules)."""

    method: Literal["compacter"] = "compacter"  # type: ignore[assignment]
    phm_dim: int = 2

    def plan(self, family: Family, d_model: int) -> PETPlan:
        base = super().plan(family, d_model)
        return PETPlan(**{**base.__dict__, "encoder_delta": "phm", "phm_dim": self.phm_dim})


class LoRAConfig(_MethodBase):
    """LoRA on q and v of every attention (encoder self, decoder self and cross), plus all biases,
    as VL-Adapter's LoRA baseline (which unfreezes parameters whose names contain ``lora`` or ``bias``, so
    T5's relative-attention-bias tables too)."""

    method: Literal["lora"] = "lora"
    rank: int = 128
    alpha: float = 32.0
    dropout: float = 0.1
    train_biases: bool = True

    def plan(self, family: Family, d_model: int) -> PETPlan:
        return PETPlan(
            lora_rank=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            init_style=family,
            train_biases=self.train_biases,
            train_visual_embedding=not self.freeze_visual_embedding,
        )


class BitFitConfig(_MethodBase):
    """BitFit: every parameter whose name contains "bias" and the visual projector, as upstream's
    ``unfreeze_bias`` (a substring test). On BART these are the linear and LayerNorm biases; T5 has no such
    biases, so on T5 it trains the two relative-attention-bias tables (encoder and decoder) and the projector."""

    method: Literal["bitfit"] = "bitfit"

    def plan(self, family: Family, d_model: int) -> PETPlan:
        notes = ("T5 has no linear or LayerNorm biases, so BitFit on T5 trains only the two relative-attention-bias "
                 "tables and the visual projector",) if family == "t5" else ()
        return PETPlan(init_style=family, train_biases=True,
                       train_visual_embedding=not self.freeze_visual_embedding, notes=notes)


class PromptTuningConfig(_MethodBase):
    """Prompt tuning: 40 encoder prompt vectors with the reparameterisation MLP (mid dim 800)."""

    method: Literal["prompt-tuning"] = "prompt-tuning"
    length: int = 40
    mid_dim: int = 800

    def plan(self, family: Family, d_model: int) -> PETPlan:
        return PETPlan(prompt_length=self.length, prompt_mid_dim=self.mid_dim, init_style=family,
                       train_visual_embedding=not self.freeze_visual_embedding)


class FullFineTuneConfig(_MethodBase):
    """Full fine-tuning: every parameter trainable. The official image script omits the task prompts."""

    method: Literal["full"] = "full"
    use_task_prompts: bool = False

    def plan(self, family: Family, d_model: int) -> PETPlan:
        return PETPlan(init_style=family, train_everything=True, use_task_prompts=self.use_task_prompts)


MethodConfig = Annotated[
    VLPETConfig | AdapterConfig | CompacterConfig | LoRAConfig | BitFitConfig | PromptTuningConfig | FullFineTuneConfig,
    Field(discriminator="method"),
]


def _named_methods() -> dict[str, MethodConfig]:
    named: dict[str, MethodConfig] = {
        "vl-pet-large": VLPETConfig(granularity="large"),
        "vl-pet-middlex": VLPETConfig(granularity="middlex"),
        "vl-pet-middley": VLPETConfig(granularity="middley"),
        "vl-pet-small": VLPETConfig(granularity="small"),
        "vl-adapter": AdapterConfig(),
        "lora": LoRAConfig(),
        "bitfit": BitFitConfig(),
        "compacter": CompacterConfig(),
        "prompt-tuning": PromptTuningConfig(),
        "full": FullFineTuneConfig(),
    }
    for g in ("large", "middlex", "middley", "small"):
        named[f"vl-adapter+g-{g}+lw"] = AdapterConfig(gate=g, lightweight_decoder=True)
        named[f"compacter+g-{g}+lw"] = CompacterConfig(gate=g, lightweight_decoder=True)
    return named


#: The paper's methods by their CLI names (issue interface), then the Table 9 transfer designs.
PAPER_METHODS: tuple[str, ...] = (
    "vl-pet-large", "vl-pet-middlex", "vl-pet-middley", "vl-pet-small",
    "vl-adapter", "lora", "bitfit", "compacter", "prompt-tuning", "full",
)
TRANSFER_METHODS: tuple[str, ...] = tuple(
    f"{base}+g-{g}+lw" for base in ("vl-adapter", "compacter") for g in ("small", "middlex", "middley", "large")
)


def method_config(name: str) -> MethodConfig:
    """The config for a method name (``vlpet params`` lists them); a clear error for unknown names."""
    named = _named_methods()
    key = name.strip().lower()
    if key not in named:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(named)}")
    return named[key].model_copy(deep=True)


def known_methods() -> list[str]:
    return list(_named_methods())
