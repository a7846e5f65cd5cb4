"""The paper's real CLIP architectures through our extractors: depth and output shapes.

The other extractor and engine tests use tiny configs (conftest's ``tiny_clip``); this one guards the recipe
itself: open_clip's RN101 / ViT-B-32 / ViT-B-16 as registered, built on the meta device (no memory, no
initialisation, no arithmetic: only shapes flow), so the full-size builds cost seconds, not minutes.
"""

from __future__ import annotations

import open_clip
import pytest
import torch

from features.extractors import ClipRN101Grid, ClipViTB16Grid, ClipViTB32Grid, ClipViTB32Video
from features.weights import WeightsIdentity


def _meta_extractor(cls, **kw):
    with torch.device("meta"):
        model = open_clip.create_model(cls.model_name, pretrained=None, force_quick_gelu=True, device="meta")
    ident = WeightsIdentity(cls.model_name, "random-init", None, True, open_clip.__version__, True, seed=0)
    return cls(device="meta", model=model, identity=ident, **kw), model


def test_rn101_is_the_papers_depth_and_grid():
    ext, model = _meta_extractor(ClipRN101Grid, pooled=True)
    assert [len(getattr(model.visual, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]  # ResNet-101
    out = ext.forward_all(torch.empty(2, 3, 224, 224, device="meta"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"features": (2, 49, 2048), "pooled": (2, 512)}


@pytest.mark.parametrize("cls, tokens", [(ClipViTB32Grid, 49), (ClipViTB16Grid, 196)])
def test_vit_b_is_the_papers_depth_and_tokens(cls, tokens):
    ext, model = _meta_extractor(cls, pooled=True)
    assert len(model.visual.transformer.resblocks) == 12 and model.visual.transformer.width == 768  # ViT-B
    out = ext.forward_all(torch.empty(2, 3, 224, 224, device="meta"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "features": (2, tokens, 768), "cls": (2, 768), "pooled": (2, 512)}


def test_video_frames_are_vit_b32_pooled_512():
    ext, model = _meta_extractor(ClipViTB32Video)
    assert len(model.visual.transformer.resblocks) == 12
    assert tuple(ext.forward(torch.empty(5, 3, 224, 224, device="meta")).shape) == (5, 512)
