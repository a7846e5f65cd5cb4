"""The VL-T5-style multimodal encoder-decoder with a PET method applied (docs/method.md §3-4).

Encoder input = [prompt vectors (prompt tuning only) ; text embeddings ; visual embeddings], full
bidirectional attention, mask = [1…1 ; text padding mask ; 1…1] (padded frames are not masked unless
``mask_padded_frames`` is set). The stock HF encoder runs on it; ``vlpet.layout`` makes its embedding
stage treat text and visual tokens as VL-T5 does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from vlpet.backbones import BackboneInfo
from vlpet.config import Family, MethodConfig, PETPlan
from vlpet.injection import (
    init_new_module,
    inject,
    is_encoder_layer_norm,
    is_layer_norm,
    is_pet_parameter,
)
from vlpet.layout import install_layout
from vlpet.modules import PromptEncoder
from vlpet.visual import VisualEmbedding, downsample_grid


@dataclass
class VisualConfig:
    """How visual features enter the model.

    ``downsample``: 7×7 grid → AdaptiveMaxPool2d(6×6) = 36 tokens per image (``--downsample``).
    ``mask_padded_frames``: opt-in masking of zero-padded video frames (official: not masked).
    ``feat_mean``/``feat_std``: opt-in per-dimension standardisation of the input features (official: none).
    Real CLIP features do not need it; features of a *random-init* CLIP do (their per-image variation is
    ~10x smaller than their shared offset, so the projector barely sees it). Saved with the checkpoint config.
    """

    feat_dim: int = 2048
    downsample: bool = True
    n_images: int = 2
    mask_padded_frames: bool = False
    feat_mean: list[float] | None = None
    feat_std: list[float] | None = None


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Token CE averaged per sample over non-pad (-100) tokens, times the optional per-sample weight
    (the VQA soft score), then averaged over the batch, as the official trainer computes it."""
    b, length, v = logits.shape
    tok = F.cross_entropy(logits.reshape(-1, v).float(), labels.reshape(-1), ignore_index=-100, reduction="none")
    mask = (labels != -100).float()
    per_sample = (tok.view(b, length) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.dtype)
    return per_sample.mean()


def _first_rows_per_image(t: torch.Tensor, n_img: int, keep: int, name: str) -> torch.Tensor:
    """(B, n_img*R, ...) → (B, n_img*keep, ...): the first ``keep`` rows of each image, as upstream's
    ``Downsample`` cuts boxes and order ids to the pooled token count."""
    if t.shape[1] % n_img or t.shape[1] // n_img < keep:
        raise ValueError(f"{name} has {t.shape[1]} rows for {n_img} image(s); need at least {keep} per image "
                         "(one per visual token)")
    rows = t.reshape(t.shape[0], n_img, t.shape[1] // n_img, *t.shape[2:])[:, :, :keep]
    return rows.reshape(t.shape[0], n_img * keep, *t.shape[2:])


class VLSeq2Seq(nn.Module):
    def __init__(self, backbone: nn.Module, info: BackboneInfo, method: MethodConfig, plan: PETPlan,
                 visual: VisualConfig, base_vocab_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.info = info
        self.method = method
        self.plan = plan
        self.visual_config = visual
        self.feat_mean: torch.Tensor | None
        self.feat_std: torch.Tensor | None
        if (visual.feat_mean is None) != (visual.feat_std is None):
            raise ValueError("VisualConfig: give both feat_mean and feat_std, or neither")
        if visual.feat_mean is not None:
            mean, std = torch.tensor(visual.feat_mean), torch.tensor(visual.feat_std)
            if mean.shape != (visual.feat_dim,) or std.shape != (visual.feat_dim,) or bool((std <= 0).any()):
                raise ValueError(f"VisualConfig: feat_mean/feat_std must be {visual.feat_dim} values, std > 0")
            self.register_buffer("feat_mean", mean, persistent=False)
            self.register_buffer("feat_std", std, persistent=False)
        else:
            self.feat_mean = self.feat_std = None
        self.base_vocab_size = base_vocab_size  # rows beyond this were added (and randomly initialised) by us
        self.family: Family = info.family
        self.layout = install_layout(backbone, self.family)
        d = backbone.config.d_model
        self.visual_embedding = VisualEmbedding(
            visual.feat_dim, d, backbone.get_input_embeddings(), self.family, n_images=visual.n_images,
            layer_norm_eps=getattr(backbone.config, "layer_norm_epsilon", 1e-6))
        init_new_module(self.visual_embedding, plan.init_style, std=getattr(backbone.config, "init_std", 0.02))
        self.prompt: PromptEncoder | None = None
        if plan.prompt_length:
            self.prompt = PromptEncoder(plan.prompt_length, d, plan.prompt_mid_dim)
            init_new_module(self.prompt, plan.init_style)
        self.injected = inject(backbone, self.family, plan)
        self.apply_trainability()

    # ------------------------------------------------------------------ parameters
    def apply_trainability(self) -> None:
        """Freeze everything, then unfreeze exactly the method's trainable set (docs/method.md §3, §8)."""
        p = self.plan
        for name, param in self.named_parameters():
            if p.train_everything:
                trainable = True
            elif name.startswith("visual_embedding."):
                trainable = p.train_visual_embedding
            elif name.startswith("prompt.") or is_pet_parameter(name):
                trainable = True
            else:
                trainable = ((p.train_encoder_layer_norms and is_encoder_layer_norm(name))
                             or (p.train_all_layer_norms and is_layer_norm(name))
                             # upstream's substring test: also T5's relative_attention_bias.weight tables
                             or (p.train_biases and "bias" in name))
            param.requires_grad_(trainable)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------------ inputs
    def embed_visual(self, vis_feats: torch.Tensor, boxes: torch.Tensor | None = None,
                     img_order_ids: torch.Tensor | None = None, obj_order_ids: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """(B, V, F) for one image/video, or (B, I, V, F) for I images (NLVR2: I=2 → 72 tokens)."""
        cfg = self.visual_config
        if self.feat_mean is not None:
            # After zero-padding on purpose: affine before the linear projector, so a padded frame (0-μ)/σ is
            # exactly upstream's raw zero frame under a reparametrised projector (docs/fidelity.md).
            vis_feats = (vis_feats - self.feat_mean.to(vis_feats.dtype)) / self.feat_std.to(vis_feats.dtype)
        if vis_feats.dim() not in (3, 4):
            raise ValueError(f"vis_feats must be (B, V, F) or (B, I, V, F); got shape {tuple(vis_feats.shape)}")
        if vis_feats.dim() == 3:
            vis_feats = vis_feats.unsqueeze(1)
            if boxes is not None and boxes.dim() == 3:
                boxes = boxes.unsqueeze(1)
        b, n_img, n_cells, f = vis_feats.shape
        pooled = cfg.downsample and n_cells == 49
        if pooled:
            vis_feats = downsample_grid(vis_feats)
        v = vis_feats.shape[2]
        if boxes is not None and boxes.dim() == 4:
            boxes = boxes.reshape(b, n_img * boxes.shape[2], boxes.shape[3])
        if pooled:  # upstream's Downsample keeps the first rows of each image's boxes and order ids
            boxes, img_order_ids, obj_order_ids = (
                None if t is None else _first_rows_per_image(t, n_img, v, name)
                for t, name in ((boxes, "boxes"), (img_order_ids, "img_order_ids"), (obj_order_ids, "obj_order_ids")))
        if n_img > 1 and img_order_ids is None:
            img_order_ids = torch.arange(n_img, device=vis_feats.device).repeat_interleave(v).expand(b, -1)
        if n_img > 1 and obj_order_ids is None:
            obj_order_ids = torch.arange(v, device=vis_feats.device).repeat(n_img).expand(b, -1)
        vis_feats = vis_feats.reshape(b, n_img * v, f)
        return self.visual_embedding(vis_feats, boxes, img_order_ids, obj_order_ids)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, vis_feats: torch.Tensor,
               vis_attention_mask: torch.Tensor | None = None, **visual_kwargs: Any
               ) -> tuple[BaseModelOutput, torch.Tensor]:
        """Run the encoder on [prompts ; text ; visual]; returns its output and the full attention mask."""
        # BART's word embedding module applies its own sqrt(d) scale when scale_embedding is set (once, as
        # upstream's `embed_tokens(ids) * embed_scale`); T5 has none.
        text = self.backbone.get_input_embeddings()(input_ids)
        vis = self.embed_visual(vis_feats, **visual_kwargs).to(text.dtype)
        b = text.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        if vis_attention_mask is None or not self.visual_config.mask_padded_frames:
            vis_attention_mask = torch.ones(vis.shape[:2], dtype=attention_mask.dtype, device=vis.device)
        parts, masks = [text, vis], [attention_mask, vis_attention_mask.to(attention_mask.dtype)]
        n_prompt = 0
        if self.prompt is not None:
            prompts = self.prompt(b).to(text.dtype)
            n_prompt = prompts.shape[1]
            parts.insert(0, prompts)
            masks.insert(0, torch.ones(b, n_prompt, dtype=attention_mask.dtype, device=text.device))
        inputs_embeds = torch.cat(parts, dim=1)
        mask = torch.cat(masks, dim=1)
        self.layout.set(n_prompt, text.shape[1])
        try:
            out = self.backbone.get_encoder()(inputs_embeds=inputs_embeds, attention_mask=mask, return_dict=True)
        finally:
            self.layout.clear()
        return out, mask

    # ------------------------------------------------------------------ forward / generate
    def forward(self, input_ids: torch.Tensor, vis_feats: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                loss_weights: torch.Tensor | None = None, vis_attention_mask: torch.Tensor | None = None,
                **visual_kwargs: Any) -> dict[str, torch.Tensor]:
        """Returns ``logits`` and, with ``labels`` (pad = -100), the official per-sample-averaged ``loss``."""
        enc, mask = self.encode(input_ids, attention_mask, vis_feats, vis_attention_mask, **visual_kwargs)
        out = self.backbone(encoder_outputs=enc, attention_mask=mask, labels=None,
                            decoder_input_ids=decoder_input_ids if decoder_input_ids is not None
                            else self._shift_right(labels), return_dict=True)
        result = {"logits": out.logits}
        if labels is not None:
            result["loss"] = seq2seq_loss(out.logits, labels, loss_weights)
        return result

    def _shift_right(self, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            raise ValueError("forward needs labels or decoder_input_ids")
        cfg = self.backbone.config
        start = cfg.decoder_start_token_id
        shifted = labels.new_full(labels.shape, cfg.pad_token_id)
        shifted[:, 1:] = labels[:, :-1]
        shifted[:, 0] = start
        return shifted.masked_fill(shifted == -100, cfg.pad_token_id)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, vis_feats: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 vis_attention_mask: torch.Tensor | None = None, visual_kwargs: dict[str, Any] | None = None,
                 **generate_kwargs: Any) -> torch.Tensor:
        """HF ``generate`` on our encoder output (beam search expands it); returns decoder token ids."""
        enc, mask = self.encode(input_ids, attention_mask, vis_feats, vis_attention_mask, **(visual_kwargs or {}))
        return self.backbone.generate(encoder_outputs=enc, attention_mask=mask, **generate_kwargs)

    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild this model's structure (saved next to trainable weights)."""
        return {
            "method": self.method.model_dump(),
            "backbone": self.info.as_dict(),
            "backbone_config": self.backbone.config.to_dict(),
            "visual": asdict(self.visual_config),
            "vocab_size": self.backbone.get_input_embeddings().num_embeddings,
            "base_vocab_size": self.base_vocab_size,
        }
