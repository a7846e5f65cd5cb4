"""features.extractors + features.weights: parity with open_clip's own outputs, preprocessing, weights resolution.

Models are random-init (``weights="random"``, no network here) and tiny (conftest's ``tiny_clip``: one block per
stage, the real widths, so every shape is the paper's); each is built once per module. The real architectures'
shapes are checked in test_clip_architectures.py.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import pickle
import warnings

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import save_file

from features.extractors import (
    CLIP_MEAN,
    CLIP_STD,
    ClipRN101Grid,
    ClipViTB16Grid,
    ClipViTB32Grid,
    ClipViTB32Video,
    get_extractor,
    hero_crop_offsets,
    hero_resize_dims,
    list_extractors,
)
from features.weights import RandomWeightsWarning, WeightsIdentity, find_cached_pretrained, load_clip
from vlpet.hub import WeightsUnavailableError

pytestmark = pytest.mark.usefixtures("tiny_clip")


@pytest.fixture(autouse=True)
def _quiet_random_weights():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        yield


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(300, 200), (180, 260), (224, 224), (640, 480)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    """fp32 agreement relative to the tensor's scale (random-init activations are tiny)."""
    scale = float(b.abs().max())
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= rel * max(scale, 1e-12) + 1e-7, (float((a - b).abs().max()), scale)


@pytest.fixture(scope="module")
def rn101(tiny_clip):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        ext = ClipRN101Grid(weights="random", device="cpu", pooled=True)
        _ = ext.model
    return ext


@pytest.fixture(scope="module")
def vit_b32(tiny_clip):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        ext = ClipViTB32Grid(weights="random", device="cpu", pooled=True)
        _ = ext.model
    return ext


@pytest.fixture(scope="module")
def rn101_batch(rn101):
    """One batch-2 forward of the RN101 extractor, shared by the tests that compare against it."""
    x = rn101.preprocess(_images(2))
    return x, rn101.forward_all(x)


@pytest.fixture(scope="module")
def rn101_file(rn101, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "rn101.safetensors"
    save_file({k: v.contiguous() for k, v in rn101.model.state_dict().items()}, str(path))
    yield path
    path.unlink(missing_ok=True)  # do not leave weights on the CI host's disk


# ----------------------------------------------------------------------------------------------------- registry

def test_registry_and_specs():
    assert list_extractors() == ["clip-rn101-grid", "clip-vit-b16-grid", "clip-vit-b32-grid", "clip-vit-b32-video"]
    shapes = {"clip-rn101-grid": [49, 2048], "clip-vit-b32-grid": [49, 768], "clip-vit-b16-grid": [196, 768],
              "clip-vit-b32-video": [None, 512]}
    for name, shape in shapes.items():
        ext = get_extractor(name, device="cpu")
        spec = ext.spec_params()
        json.dumps(spec)  # JSON-serialisable for the store
        assert spec["extractor"] == name and spec["image_size"] == 224 and spec["dtype"] == "float16"
        assert spec["mean"] == list(CLIP_MEAN) and spec["std"] == list(CLIP_STD)
        assert spec["interpolation"] == "bicubic" and spec["quick_gelu"] is True
        assert spec["outputs"]["features"]["shape"] == shape
        assert ext._model is None  # specs need no model
    assert get_extractor("clip-rn101-grid").channels_last is True
    assert get_extractor("clip-vit-b32-grid").channels_last is False
    with pytest.raises(KeyError):
        get_extractor("clip-rn50-grid")


def test_output_descriptions_are_not_spec_parameters(monkeypatch):
    """Store specs (and so store digests) hold parameters only: rewording an output's prose changes nothing."""
    ext = get_extractor("clip-vit-b32-grid", device="cpu")
    before = ext.spec_params()
    assert ext.outputs["cls"].description and "description" not in json.dumps(before)
    reworded = {k: dataclasses.replace(v, description="reworded") for k, v in ext.outputs.items()}
    monkeypatch.setattr(type(ext), "outputs", property(lambda self: reworded))
    assert ext.spec_params() == before
    assert ext.spec_params()["outputs"] == {"features": {"shape": [49, 768], "dtype": "float16"},
                                            "cls": {"shape": [768], "dtype": "float16"}}


# ------------------------------------------------------------------------------------------------ preprocessing

def test_image_preprocess_matches_torchvision_reference():
    ext = ClipRN101Grid(device="cpu")
    ims = _images(3)
    ours = ext.preprocess(ims)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    for i, im in enumerate(ims):
        resized = TF.resize(im, [224, 224], interpolation=TF.InterpolationMode.BICUBIC)  # PIL bicubic, no aspect
        ref = (TF.to_tensor(resized) - mean) / std
        assert torch.equal(ours[i], ref)
    # the uint8 path (normalised later, inside forward) carries the same pixels
    u8 = ext.preprocess(ims, as_uint8=True)
    assert u8.dtype == torch.uint8 and u8.shape == (3, 3, 224, 224)
    assert torch.equal(ext.normalize(u8), ours)
    assert ext.preprocess(ims[0]).shape == (1, 3, 224, 224)


def test_extractor_pickles_without_its_model(vit_b32):
    """Worker processes get a model-less copy for decode/preprocess; forward stays in the parent."""
    clone = pickle.loads(pickle.dumps(vit_b32))
    assert clone._model is None and clone.spec_params() == vit_b32.spec_params()
    assert torch.equal(clone.preprocess(_images(1)), vit_b32.preprocess(_images(1)))
    injected = ClipViTB32Video(device="cpu", model=vit_b32.model, identity=vit_b32.identity)
    clone = pickle.loads(pickle.dumps(injected))
    with pytest.raises(RuntimeError, match="unpickled copy"):
        clone.forward(clone.preprocess(np.zeros((1, 48, 64, 3), np.uint8)))


def test_video_preprocess_shorter_side_and_centre_crop():
    ext = ClipViTB32Video(device="cpu")
    assert hero_resize_dims(90, 160) == (224, 398) and hero_crop_offsets(224, 398) == (0, 87)
    assert hero_resize_dims(200, 100) == (448, 224) and hero_crop_offsets(448, 224) == (112, 0)
    # landscape 100x200 frame: red left quarter, green right quarter, blue middle
    f = np.zeros((2, 100, 200, 3), np.uint8)
    f[:, :, :50] = (255, 0, 0)
    f[:, :, 50:150] = (0, 0, 255)
    f[:, :, 150:] = (0, 255, 0)
    f[1, 40:60, 90:110] = 255  # a white centre square in frame 1
    u8 = ext.preprocess(f, as_uint8=True)
    assert u8.shape == (2, 3, 224, 224) and u8.dtype == torch.uint8
    ref = F.interpolate(torch.from_numpy(f).permute(0, 3, 1, 2), size=(224, 448), mode="bicubic", antialias=True)
    assert torch.equal(u8, ref[:, :, :, 112:336])  # crop x offset int((448 - 224) / 2)
    # the crop keeps exactly the middle half: pure blue except a bicubic fringe at the borders, no red/green
    assert (u8[0, 2, :, 8:-8] == 255).all() and (u8[0, 0, :, 8:-8] == 0).all() and (u8[0, 1, :, 8:-8] == 0).all()
    white = (u8[1].min(dim=0).values > 200).nonzero()
    assert white[:, 0].float().mean().item() == pytest.approx(111.5, abs=1.5)
    assert white[:, 1].float().mean().item() == pytest.approx(111.5, abs=1.5)
    assert torch.equal(ext.preprocess(f), ext.normalize(u8))
    portrait = ext.preprocess(np.zeros((1, 200, 100, 3), np.uint8), as_uint8=True)
    assert portrait.shape == (1, 3, 224, 224)


# ----------------------------------------------------------------------------------------------------- parity

def test_rn101_grid_attnpool_equals_encode_image(rn101, rn101_batch):
    x, out = rn101_batch
    grid = out["features"]
    assert grid.shape == (2, 49, 2048) and grid.dtype == torch.float32
    with torch.inference_mode():
        ref = rn101.model.encode_image(x)
        fmap = grid.reshape(2, 7, 7, 2048).permute(0, 3, 1, 2)  # undo the row-major flattening
        pooled_from_grid = rn101.model.visual.attnpool(fmap)
    _close(pooled_from_grid, ref)
    _close(out["pooled"], ref)  # the pooled output comes from the same forward pass
    assert torch.equal(grid[:, 3 * 7 + 5], fmap[:, :, 3, 5])  # row-major: token r*7+c is grid cell (r, c)
    stored = rn101.to_storage(out)
    assert stored["features"].dtype == np.float16 and stored["features"].shape == (2, 49, 2048)
    assert stored["pooled"].shape == (2, 512)
    assert np.array_equal(stored["features"], grid.half().numpy())


def test_rn101_channels_last_off_and_uint8_input_give_same_features(rn101, rn101_batch):
    _, out = rn101_batch
    plain = copy.deepcopy(rn101.model)
    plain.visual.to(memory_format=torch.contiguous_format)
    contiguous = ClipRN101Grid(device="cpu", channels_last=False, model=plain, identity=rn101.identity)
    assert plain.visual.conv1.weight.is_contiguous()
    u8 = rn101.preprocess(_images(2), as_uint8=True)  # normalised inside forward
    _close(contiguous.forward(u8), out["features"])


def _vit_reference(name: str, ours: torch.nn.Module) -> torch.nn.Module:
    """open_clip's own token output: ``output_tokens=True`` (a vision-config field), same weights as ours."""
    vision_cfg = {**open_clip.get_model_config(name)["vision_cfg"], "output_tokens": True}
    ref = open_clip.create_model(name, pretrained=None, force_quick_gelu=True, vision_cfg=vision_cfg).eval()
    ref.load_state_dict(ours.state_dict())
    return ref


def test_vit_b32_tokens_and_cls_match_output_tokens_model(vit_b32):
    ref = _vit_reference("ViT-B-32", vit_b32.model)
    x = vit_b32.preprocess(_images(2))
    out = vit_b32.forward_all(x)
    with torch.inference_mode():
        pooled, tokens = ref.visual(x)
        cls_projected = out["cls"] @ vit_b32.model.visual.proj
    assert out["features"].shape == (2, 49, 768) and out["cls"].shape == (2, 768)
    _close(out["features"], tokens)
    _close(cls_projected, pooled)
    _close(out["pooled"], pooled)


def test_vit_b16_tokens_and_cls_match_output_tokens_model():
    # one B-16 build: the output_tokens=True model itself is injected into our extractor (identical weights;
    # forward_intermediates does not look at output_tokens)
    vision_cfg = {**open_clip.get_model_config("ViT-B-16")["vision_cfg"], "output_tokens": True}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True, vision_cfg=vision_cfg).eval()
    ident = WeightsIdentity("ViT-B-16", "random-init", None, True, open_clip.__version__, True, seed=0)
    ext = ClipViTB16Grid(device="cpu", model=ref, identity=ident)
    x = ext.preprocess(_images(1))
    out = ext.forward_all(x)
    with torch.inference_mode():
        pooled, tokens = ref.visual(x)
    assert out["features"].shape == (1, 196, 768)
    _close(out["features"], tokens)
    _close(out["cls"] @ ref.visual.proj, pooled)
    assert "pooled" not in out


def test_video_extractor_is_encode_image_per_frame(vit_b32):
    ext = ClipViTB32Video(device="cpu", model=vit_b32.model, identity=vit_b32.identity)
    frames = np.random.default_rng(1).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    x = ext.preprocess(frames)
    feats = ext.forward(x)
    with torch.inference_mode():
        ref = vit_b32.model.encode_image(x)
    assert feats.shape == (3, 512)
    _close(feats, ref)
    assert ext.to_storage(feats).dtype == np.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_autocast_path(vit_b32):
    ext = ClipViTB32Grid(device="cuda", model=copy.deepcopy(vit_b32.model), identity=vit_b32.identity)
    x = ext.preprocess(_images(2), as_uint8=True)
    out = ext.forward(x)
    assert out.device.type == "cuda" and out.dtype == torch.float32 and ext.precision == "fp16-autocast"
    ref = vit_b32.forward(x)
    assert float((out.cpu() - ref).abs().max()) <= 2e-2 * float(ref.abs().max())


# ------------------------------------------------------------------------------------------------------ weights

def test_safetensors_file_reproduces_outputs_and_identity(rn101_batch, rn101_file):
    x, out = rn101_batch
    loaded = ClipRN101Grid(pretrained=str(rn101_file), device="cpu", pooled=True)  # -> load_clip(..., path)
    ident = loaded.identity
    assert ident.random_init is False and ident.source == str(rn101_file.resolve()) and ident.file == ident.source
    assert ident.sha256 == hashlib.sha256(rn101_file.read_bytes()).hexdigest()
    assert ident.open_clip_version == open_clip.__version__ and ident.model_name == "RN101"
    assert ident.key() == f"RN101-quickgelu:sha256:{ident.sha256}"
    again = loaded.forward_all(x)
    assert torch.equal(again["features"], out["features"]) and torch.equal(again["pooled"], out["pooled"])


def test_cached_tag_is_used_offline(rn101, rn101_file, tmp_path):
    # lay the file out as the HF hub cache would hold timm/resnet101_clip.openai
    repo = tmp_path / "models--timm--resnet101_clip.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").symlink_to(rn101_file)
    assert find_cached_pretrained("RN101", "openai", cache_dir=tmp_path) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        model, ident = load_clip("RN101", "openai", cache_dir=tmp_path)
    assert (ident.source, ident.tag, ident.random_init, ident.quick_gelu) == ("openai", "openai", False, True)
    assert ident.sha256 == hashlib.sha256(rn101_file.read_bytes()).hexdigest()
    assert torch.equal(model.visual.attnpool.c_proj.weight, rn101.model.visual.attnpool.c_proj.weight)


def test_uncached_official_weights_offline_are_an_error_never_random(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1: nothing cached under tmp_path, so no weights, and no silent fallback
    for pretrained in (None, "openai"):
        with pytest.raises(WeightsUnavailableError) as err:
            load_clip("ViT-B-32", pretrained, cache_dir=tmp_path)
        msg = str(err.value)
        assert "timm/vit_base_patch32_clip_224.openai" in msg and "open_clip_model.safetensors" in msg
        assert str(tmp_path) in msg and "vlpet weights fetch" in msg and "--pretrained FILE" in msg


def test_random_weights_only_by_name(vit_b32, caplog):
    with pytest.warns(RandomWeightsWarning, match="--weights random"):
        model, ident = load_clip("ViT-B-32", weights="random", quick_gelu=True)
    assert ident.random_init is True and ident.source == "random-init" and ident.sha256 is None
    assert ident.quick_gelu is True and ident.seed == 0 and ident.hub_repo is None
    assert "RANDOM WEIGHTS" in caplog.text
    json.dumps(ident.as_dict())
    # random init is deterministic (seeded), so identical to the fixture's seed-0 model
    ours = vit_b32.model.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="contradict"):
        load_clip("ViT-B-32", "openai", weights="random")
    with pytest.raises(ValueError, match="official, random"):
        load_clip("ViT-B-32", weights="pretrained")


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_clip("RN101", tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="neither a file nor a pretrained tag"):
        load_clip("RN101", "laion-made-up")
    assert isinstance(ClipRN101Grid(device="cpu").spec_params(), dict)
    with pytest.raises(ValueError):
        ClipRN101Grid(model=torch.nn.Linear(1, 1))  # an injected model needs its identity
    ident = WeightsIdentity("RN101", "random-init", None, True, "3.3.0", True, seed=1)
    assert ident.key() == "RN101-quickgelu:random-init:seed=1:open_clip=3.3.0"
