"""Visual input: the VL-T5 visual embedding and the feature resizers (docs/method.md §3-4).

``VisualEmbedding`` = LN(Linear(feat→d)) + LN(Linear(box5→d)) + img-order embedding + obj-order embedding,
with LayerNorm for BART and RMS norm (T5LayerNorm) for T5. Boxes are all zeros in the CLIP pipeline
([x1, x2, y1, y2, area]), so the box branch is a learned constant. The object-order embedding reads the
frozen word-embedding rows ``vocab - 1 - k`` (the ``<vis_extra_id_k>`` tokens, unscaled); it is held by reference,
not registered, so it stays frozen and is not counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.t5.modeling_t5 import T5LayerNorm


def downsample_grid(feats: torch.Tensor, out_side: int = 6) -> torch.Tensor:
    """(…, S*S, F) grid tokens (row-major) → (…, out_side², F) by AdaptiveMaxPool2d (49 → 36 in the paper)."""
    *lead, n, f = feats.shape
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"cannot downsample {n} visual tokens: not a square grid (expected e.g. 49 = 7x7)")
    x = feats.reshape(-1, side, side, f).permute(0, 3, 1, 2)
    x = F.adaptive_max_pool2d(x, (out_side, out_side))
    return x.permute(0, 2, 3, 1).reshape(*lead, out_side * out_side, f)


def resize_frames(frames: torch.Tensor, n_frames: int = 64) -> torch.Tensor:
    """One video's (T, F) frame features → (n_frames, F): zero-pad when shorter, adaptive max-pool when longer."""
    t, f = frames.shape
    if t == n_frames:
        return frames
    if t < n_frames:
        return torch.cat([frames, frames.new_zeros(n_frames - t, f)], dim=0)
    return F.adaptive_max_pool1d(frames.t().unsqueeze(0), n_frames).squeeze(0).t()


def resize_videos(videos: Sequence[torch.Tensor], n_frames: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch of variable-length videos → (B, n_frames, F) and a (B, n_frames) mask of real frames."""
    feats = torch.stack([resize_frames(v, n_frames) for v in videos])
    lengths = torch.tensor([min(len(v), n_frames) for v in videos])
    mask = (torch.arange(n_frames)[None, :] < lengths[:, None]).long()
    return feats, mask


class VisualEmbedding(nn.Module):
    def __init__(self, feat_dim: int, d_model: int, word_embeddings: nn.Embedding, family: str,
                 n_images: int = 2, pos_dim: int = 4, layer_norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.feat_dim = feat_dim

        def norm() -> nn.Module:
            return nn.LayerNorm(d_model) if family == "bart" else T5LayerNorm(d_model, eps=layer_norm_eps)

        self.feat_embedding = nn.Sequential(nn.Linear(feat_dim, d_model), norm())
        self.absolute_vis_pos_embedding = nn.Sequential(nn.Linear(pos_dim + 1, d_model), norm())
        self.img_order_embedding = nn.Embedding(n_images, d_model)
        self._word_embeddings = [word_embeddings]  # a reference, deliberately not a registered submodule

    @property
    def obj_order_embedding(self) -> nn.Embedding:
        return self._word_embeddings[0]

    def forward(self, feats: torch.Tensor, boxes: torch.Tensor | None = None,
                img_order_ids: torch.Tensor | None = None, obj_order_ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        b, n, f = feats.shape
        if f != self.feat_dim:
            raise ValueError(f"visual features have dimension {f}, but the visual projector expects "
                             f"{self.feat_dim} (build the model with feat_dim={f})")
        if boxes is None:
            boxes = feats.new_zeros(b, n, 4)
        area = (boxes[..., 3] - boxes[..., 2]) * (boxes[..., 1] - boxes[..., 0])
        pos = torch.cat([boxes, area.unsqueeze(-1)], dim=-1)
        if img_order_ids is None:
            img_order_ids = torch.zeros(b, n, dtype=torch.long, device=feats.device)
        if obj_order_ids is None:
            obj_order_ids = torch.arange(n, device=feats.device).expand(b, n)
        emb = self.obj_order_embedding
        obj_rows = emb.num_embeddings - 1 - obj_order_ids
        # The raw rows: BART's word-embedding module scales by sqrt(d) when scale_embedding is set, but
        # upstream's obj_order_embedding is the plain, unscaled shared table.
        return (self.feat_embedding(feats) + self.absolute_vis_pos_embedding(pos)
                + self.img_order_embedding(img_order_ids) + F.embedding(obj_rows, emb.weight))
