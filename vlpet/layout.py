"""Make a stock BART/T5 encoder treat the sequence [prompts ; text ; visual] the way VL-T5 does (docs/method.md §4).

We feed the concatenated embeddings as ``inputs_embeds``; three small drop-in subclasses, sharing the
original parameters (so state-dict keys and pretrained weights are untouched), make the encoder's
embedding stage segment-aware:
- BART: learned positions only for the text tokens (positions 0..T-1), nothing for prompts/visual tokens;
  ``layernorm_embedding`` on the language segment [prompts ; text], not on visual tokens;
- T5: relative position bias only in the language×language block, positions counted from the first prompt
  (upstream's ``compute_bias(L, L)`` with L = prompts + text), 0 for any pair involving a visual token.
The model sets the current layout (prompt length, text length) on a shared ``EncoderLayout`` before
each encoder call. Without a layout set, the modules behave exactly like the originals.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.bart.modeling_bart import BartLearnedPositionalEmbedding


class EncoderLayout:
    """The segment lengths of the encoder input currently being processed: [prompt | text | rest]."""

    def __init__(self) -> None:
        self.prompt_len: int | None = None
        self.text_len: int | None = None

    def set(self, prompt_len: int, text_len: int) -> None:
        self.prompt_len, self.text_len = prompt_len, text_len

    def clear(self) -> None:
        self.prompt_len = self.text_len = None

    @property
    def active(self) -> bool:
        return self.text_len is not None

    def text_slice(self) -> slice:
        assert self.prompt_len is not None and self.text_len is not None
        return slice(self.prompt_len, self.prompt_len + self.text_len)

    def language_slice(self) -> slice:
        """[prompts ; text]: upstream concatenates the prompts before its embedding LayerNorm (BART) and
        counts them in the relative-bias length (T5)."""
        assert self.prompt_len is not None and self.text_len is not None
        return slice(0, self.prompt_len + self.text_len)


class TextOnlyPositionalEmbedding(BartLearnedPositionalEmbedding):
    """BART learned positions for the text segment only; zero vectors for prompts and visual tokens."""

    layout: EncoderLayout

    def forward(self, input_ids: torch.Tensor, past_key_values_length: int = 0,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if not self.layout.active or position_ids is not None:
            return super().forward(input_ids, past_key_values_length, position_ids)
        bsz, seq_len = input_ids.shape[:2]
        sl = self.layout.text_slice()
        text_pos = super().forward(input_ids[:, sl], past_key_values_length)
        out = text_pos.new_zeros(bsz, seq_len, text_pos.shape[-1])
        out[:, sl] = text_pos
        return out


class LanguageLayerNorm(nn.LayerNorm):
    """BART ``layernorm_embedding`` applied to [prompts ; text] only (visual tokens have their own norms)."""

    layout: EncoderLayout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layout.active:
            return super().forward(x)
        sl = self.layout.language_slice()
        return torch.cat([super().forward(x[:, sl]), x[:, sl.stop:]], dim=1)


class LanguageRelativeBias(nn.Embedding):
    """T5 relative-position-bias table whose lookups are zeroed outside the [prompts ; text] square block."""

    layout: EncoderLayout

    def forward(self, bucket: torch.Tensor) -> torch.Tensor:
        values = super().forward(bucket)  # (q, k, heads)
        if not self.layout.active or bucket.dim() != 2:
            return values
        sl = self.layout.language_slice()
        q, k = bucket.shape
        keep_q = torch.zeros(q, dtype=torch.bool, device=values.device)
        keep_k = torch.zeros(k, dtype=torch.bool, device=values.device)
        keep_q[sl] = True
        keep_k[sl] = True
        return values * (keep_q[:, None] & keep_k[None, :]).unsqueeze(-1).to(values.dtype)


def _swap_class(module: nn.Module, cls: type, layout: EncoderLayout) -> None:
    """Turn ``module`` into an instance of the subclass ``cls`` in place: same parameters, same keys."""
    if not isinstance(module, cls.__mro__[1]):
        raise TypeError(f"cannot make {type(module).__name__} a {cls.__name__}")
    module.__class__ = cls
    module.layout = layout


def install_layout(hf_model: nn.Module, family: str) -> EncoderLayout:
    """Make the encoder of ``hf_model`` segment-aware; returns the layout object the model drives."""
    layout = EncoderLayout()
    encoder = hf_model.get_encoder()
    if family == "bart":
        _swap_class(encoder.embed_positions, TextOnlyPositionalEmbedding, layout)
        _swap_class(encoder.layernorm_embedding, LanguageLayerNorm, layout)
    else:
        found = False
        for block in encoder.block:
            attn = block.layer[0].SelfAttention
            if getattr(attn, "has_relative_attention_bias", False):
                _swap_class(attn.relative_attention_bias, LanguageRelativeBias, layout)
                found = True
        if not found:
            raise RuntimeError("T5 encoder has no relative attention bias table; unsupported layout")
    return layout
