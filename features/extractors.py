"""CLIP feature extractors (open_clip): preprocessing, forward pass and the spec that names their features.

Registry (``get_extractor(name, **kwargs)``, ``list_extractors()``):

=====================  ==================================================================  =======================
name                   output (per sample, stored float16)                                 recipe
=====================  ==================================================================  =======================
``clip-rn101-grid``    ``features`` (49, 2048) = ``visual.layer4`` before attention         VL-Adapter
                       pooling, (2048,7,7) -> (7,7,2048) -> row-major (49,2048);            ``coco_CLIP.py``
                       optional ``pooled`` (512,) = ``visual.attnpool`` of that grid        (docs/data.md §3)
``clip-vit-b32-grid``  ``features`` (49, 768) last-layer patch tokens after ``ln_post``;
                       ``cls`` (768,) the class token after ``ln_post`` (pre-projection);
                       optional ``pooled`` (512,) = ``cls @ proj`` (= ``encode_image``)
``clip-vit-b16-grid``  same with (196, 768) patch tokens
``clip-vit-b32-video`` ``features`` (T, 512) = ``encode_image`` (projected CLS, not            HERO / VALUE
                       L2-normalised) of each frame sampled every 1.5 s                      (docs/data.md §4.1)
=====================  ==================================================================  =======================

Every extractor has ``preprocess(x)`` (CPU tensor ops, batched), ``forward(batch)`` -> the ``features`` tensor
``(B, ...)`` in float32 on the extractor's device, ``forward_all(batch)`` -> all outputs, ``to_storage(outputs)`` ->
float16 numpy, ``decode(src)`` (the decode step of its recipe, from :mod:`features.decode`), ``spec_params()``
(everything that determines the numbers: the feature store's spec) and ``runtime_params()`` (device, precision:
lineage only). Batching, worker processes and the store live elsewhere (the engine).

Preprocessing
    *Grid (image) extractors*: PIL ``Image.resize((224, 224), BICUBIC)`` — exactly 224x224, aspect ratio NOT kept
    (the paper's recipe; the same call torchvision's ``Resize`` makes on PIL images), then ``/255`` and CLIP
    mean/std, in the same float32 operations as ``ToTensor`` + ``Normalize`` (bit-identical to them).
    *Video extractor*: HERO's ffmpeg ``scale`` + ``crop``: the shorter side becomes 224 and the longer
    ``int(L * 224 / S)``; bicubic with antialiasing on uint8 (``torch.nn.functional.interpolate``, PIL-equivalent
    within 1 grey level, uint8 output like ffmpeg's rgb24), centre crop at offset ``int((L' - 224) / 2)``, then
    ``/255`` and CLIP mean/std. ffmpeg's swscale bicubic (and its scaling in YUV) is not bit-identical to this.
    ``preprocess(x, as_uint8=True)`` stops before normalisation and returns uint8 ``(B, 3, 224, 224)`` (4x less to
    move between processes / to the GPU); ``forward`` normalises uint8 batches itself, with identical results.

Devices
    CPU: float32; ``channels_last`` on by default for RN101 (measured 8.8 vs 7.7 img/s at batch 8 on 2 cores, +14 %;
    an earlier survey measured +15-35 %, docs/operations.md) and off for the ViTs (17.9 vs 17.9 img/s: their only
    convolution is the patch embedding). The model's visual tower is converted in place (also an injected
    ``model``). CUDA: fp16 autocast (the paper ran OpenAI CLIP in fp16), weights stay fp32; outputs are float32
    either way. bf16 is never used (3-10x slower on these CPUs).

Weights
    ``pretrained`` and ``weights`` go to :func:`features.weights.load_clip`: by default (``pretrained=None``,
    ``weights="official"``) OpenAI's weights, downloaded from the Hugging Face hub on first use; a local file or
    another open_clip tag; or ``weights="random"`` (asked for by name, with a ``RandomWeightsWarning``); the
    result's :class:`~features.weights.WeightsIdentity` is ``extractor.identity``. The model is built lazily
    on first use. All extractors use the OpenAI architecture
    (QuickGELU), as in the paper.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from features.decode import HERO_INTERVAL, ImageDecodeOptions, VideoFrames, decode_image, read_video_frames
from features.weights import WeightsIdentity, load_clip
from vlpet.hub import check_weights

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class OutputSpec:
    """One stored output: its per-sample shape (``None`` = variable, e.g. a video's frame count) and dtype.
    ``description`` is prose for people; it is not a parameter, so rewording it changes no store's spec."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float16"
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The output's parameters for the store spec (shape and dtype only)."""
        return {"shape": list(self.shape), "dtype": self.dtype}


class Extractor:
    """Base class: model handling, normalisation, device/precision, storage conversion, spec."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "image" | "video"
    model_name: ClassVar[str]
    layer: ClassVar[str]
    image_size: ClassVar[int] = 224
    interpolation: ClassVar[str] = "bicubic"
    default_channels_last: ClassVar[bool] = False
    spec_version: ClassVar[int] = 1
    primary: ClassVar[str] = "features"

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        device: str | torch.device | None = None,
        channels_last: bool | None = None,
        fp16_on_cuda: bool = True,
        pooled: bool = False,
        quick_gelu: bool = True,
        cache_dir: str | None = None,
        weights: str = "official",
        seed: int = 0,
        allow_torchscript: bool = False,
        model: torch.nn.Module | None = None,
        identity: WeightsIdentity | None = None,
    ) -> None:
        """``model``/``identity`` inject an already built open_clip model (e.g. shared by two extractors)."""
        if model is not None and identity is None:
            raise ValueError("an injected model needs its WeightsIdentity")
        self.pretrained = pretrained
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.channels_last = self.default_channels_last if channels_last is None else bool(channels_last)
        self.fp16_on_cuda = fp16_on_cuda
        self.pooled = pooled
        self.quick_gelu = quick_gelu
        self.weights = check_weights(weights)
        self._load_kwargs = dict(cache_dir=cache_dir, weights=weights, seed=seed,
                                 allow_torchscript=allow_torchscript)
        self._model = None
        self._identity = identity
        self._injected = model is not None
        self._detached = False
        self._lock = threading.Lock()
        self._mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1)
        if model is not None:
            self._model = self._prepare_model(model)

    # ------------------------------------------------------------------------------------------------------ model
    def _prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device).eval()
        model.requires_grad_(False)
        if self.channels_last:
            model.visual.to(memory_format=torch.channels_last)
        return model

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (e.g. to decode/preprocess in worker processes) leaves the model and its lock behind.

        The copy rebuilds its model lazily from ``pretrained`` if asked to forward (same file or seed, so same
        weights); a copy of an extractor whose model was injected refuses, since it cannot rebuild those weights.
        """
        state = self.__dict__.copy()
        state["_model"] = None
        state["_lock"] = None
        state["_detached"] = True
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def model(self) -> torch.nn.Module:
        """The open_clip model (built on first access)."""
        if self._model is None and self._detached and self._injected:
            raise RuntimeError(f"{self.name}: this is an unpickled copy of an extractor with an injected model, for "
                               "decode/preprocess only; forward in the process that holds the model")
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model, self._identity = load_clip(self.model_name, self.pretrained, quick_gelu=self.quick_gelu,
                                                      **self._load_kwargs)
                    self._model = self._prepare_model(model)
        return self._model

    @property
    def identity(self) -> WeightsIdentity:
        """Which weights the model carries (builds the model if needed)."""
        _ = self.model
        assert self._identity is not None
        return self._identity

    @property
    def precision(self) -> str:
        return "fp16-autocast" if self.device.type == "cuda" and self.fp16_on_cuda else "fp32"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.fp16_on_cuda:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------------------------------------- interface
    @property
    def outputs(self) -> dict[str, OutputSpec]:
        raise NotImplementedError

    def decode(self, src: Any) -> Any:
        raise NotImplementedError

    def preprocess(self, x: Any, *, as_uint8: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def _forward_impl(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B,3,H,W)`` -> float32 ``/255`` then CLIP mean/std (ToTensor + Normalize's float32 ops)."""
        x = batch.to(torch.float32).div(255)
        mean, std = self._mean.to(x.device), self._std.to(x.device)
        return x.sub(mean).div(std)

    def _prepare_input(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got {tuple(batch.shape)}")
        if batch.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"{self.name} expects {self.image_size}x{self.image_size} input, got "
                             f"{tuple(batch.shape[-2:])}; run preprocess() first")
        x = batch.to(self.device, non_blocking=True)
        x = self.normalize(x) if x.dtype == torch.uint8 else x.to(torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward_all(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """All outputs for a preprocessed batch (float, or uint8 from ``preprocess(as_uint8=True)``), float32."""
        _ = self.model  # build on first use
        x = self._prepare_input(batch)
        with torch.inference_mode(), self._autocast():
            out = self._forward_impl(x)
        return {k: v.float() for k, v in out.items()}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The ``features`` output ``(B, ...)`` as float32 on the extractor's device."""
        return self.forward_all(batch)[self.primary]

    __call__ = forward

    def to_storage(self, outputs: torch.Tensor | dict[str, torch.Tensor]) -> np.ndarray | dict[str, np.ndarray]:
        """float16 numpy copies (cast on the device before the transfer); refuses values that overflow float16."""
        if isinstance(outputs, dict):
            return {k: self.to_storage(v) for k, v in outputs.items()}  # type: ignore[misc]
        arr = outputs.detach().to(torch.float16).cpu().numpy()
        if not np.isfinite(arr).all():
            raise FloatingPointError(f"{self.name}: non-finite values after the cast to float16 (overflow?)")
        return arr

    def spec_params(self) -> dict[str, Any]:
        """Everything that determines the feature values (for the feature store's spec); JSON-serialisable."""
        return {
            "extractor": self.name,
            "spec_version": self.spec_version,
            "kind": self.kind,
            "model": self.model_name,
            "quick_gelu": self.quick_gelu,
            "image_size": self.image_size,
            "interpolation": self.interpolation,
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "layer": self.layer,
            "outputs": {k: v.as_dict() for k, v in self.outputs.items()},
            "dtype": "float16",
        }

    def runtime_params(self) -> dict[str, Any]:
        """How this instance computes (lineage, not the spec): device, precision, memory format, versions."""
        from features.weights import open_clip_version

        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "torch": torch.__version__, "open_clip": open_clip_version()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, device={str(self.device)!r}, "
                f"pretrained={self.pretrained!r}, weights={self.weights!r})")


# ------------------------------------------------------------------------------------------------------ image grids

def _as_pil_list(x: Any) -> list[Image.Image]:
    if isinstance(x, Image.Image):
        return [x]
    if isinstance(x, np.ndarray) and x.ndim == 3:
        return [Image.fromarray(x)]
    if isinstance(x, Sequence) or isinstance(x, np.ndarray):
        return [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)) for im in x]
    raise TypeError(f"expected a PIL image, an (H, W, 3) uint8 array or a sequence of them, got {type(x).__name__}")


class _ImageGridExtractor(Extractor):
    kind = "image"

    def __init__(self, pretrained: str | None = None, *, decode_options: ImageDecodeOptions | None = None,
                 **kwargs: Any) -> None:
        super().__init__(pretrained, **kwargs)
        self.decode_options = decode_options or ImageDecodeOptions()

    def decode(self, src: Any) -> Image.Image:
        """Decode an image file (path or bytes) with this extractor's decode options."""
        return decode_image(src, self.decode_options)

    def preprocess(self, x: Any, *, as_uint8: bool = False) -> torch.Tensor:
        """PIL image(s) -> ``(B, 3, 224, 224)``: bicubic resize to exactly 224x224 (no aspect), CLIP-normalised."""
        size = (self.image_size, self.image_size)
        arrays = []
        for im in _as_pil_list(x):
            if im.mode != "RGB":
                im = im.convert("RGB")
            arrays.append(np.asarray(im.resize(size, Image.Resampling.BICUBIC)))
        if not arrays:
            return torch.zeros((0, 3, *size), dtype=torch.uint8 if as_uint8 else torch.float32)
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return batch if as_uint8 else self.normalize(batch)

    def spec_params(self) -> dict[str, Any]:
        return {**super().spec_params(), "resize": "exact 224x224 (aspect ratio not kept), no crop",
                "resize_impl": "PIL.Image.resize(BICUBIC)", "decode": self.decode_options.as_dict()}


class ClipRN101Grid(_ImageGridExtractor):
    """CLIP RN101 ``layer4`` grid before attention pooling, (49, 2048) (VL-Adapter/VL-PET image features)."""

    name = "clip-rn101-grid"
    model_name = "RN101"
    layer = "visual.layer4 (before attnpool); (2048,7,7) -> permute (7,7,2048) -> row-major (49,2048)"
    default_channels_last = True
    grid = (7, 7)
    width = 2048

    @property
    def outputs(self) -> dict[str, OutputSpec]:
        out = {"features": OutputSpec("features", (self.grid[0] * self.grid[1], self.width), "float16",
                                      "layer4 grid, row-major over (7, 7)")}
        if self.pooled:
            out["pooled"] = OutputSpec("pooled", (512,), "float16", "attnpool of the same grid (= encode_image)")
        return out

    def _forward_impl(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        visual = self.model.visual
        inter = visual.forward_intermediates(x, indices=1, stop_early=True, intermediates_only=True)
        fmap = inter["image_intermediates"][-1]  # (B, 2048, 7, 7)
        b, c, h, w = fmap.shape
        out = {"features": fmap.permute(0, 2, 3, 1).reshape(b, h * w, c)}
        if self.pooled:
            out["pooled"] = visual.attnpool(fmap)  # same forward pass, no second trunk evaluation
        return out


class _ClipViTGrid(_ImageGridExtractor):
    layer = ("visual.transformer last block, ln_post applied (forward_intermediates normalize_intermediates=True, "
             "NLC); patch tokens row-major; cls = prefix token")
    width = 768

    @property
    def outputs(self) -> dict[str, OutputSpec]:
        n = (self.image_size // self.patch) ** 2
        out = {"features": OutputSpec("features", (n, self.width), "float16", "last-layer patch tokens after ln_post"),
               "cls": OutputSpec("cls", (self.width,), "float16", "class token after ln_post, before proj")}
        if self.pooled:
            out["pooled"] = OutputSpec("pooled", (512,), "float16", "cls @ proj (= encode_image, not normalised)")
        return out

    patch: ClassVar[int]

    def _forward_impl(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.model.visual.forward_intermediates(
            x, indices=1, stop_early=True, normalize_intermediates=True, intermediates_only=not self.pooled,
            output_fmt="NLC", output_extra_tokens=True)
        out = {"features": o["image_intermediates"][-1], "cls": o["image_intermediates_prefix"][-1][:, 0]}
        if self.pooled:
            out["pooled"] = o["image_features"]
        return out


class ClipViTB32Grid(_ClipViTGrid):
    """CLIP ViT-B/32 last-layer patch tokens (49, 768) and CLS (768)."""

    name = "clip-vit-b32-grid"
    model_name = "ViT-B-32"
    patch = 32


class ClipViTB16Grid(_ClipViTGrid):
    """CLIP ViT-B/16 last-layer patch tokens (196, 768) and CLS (768)."""

    name = "clip-vit-b16-grid"
    model_name = "ViT-B-16"
    patch = 16


# ------------------------------------------------------------------------------------------------------------ video

def hero_resize_dims(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """HERO's ``_get_output_dim``: shorter side -> ``size``, longer -> ``int(L * size / S)``; returns (h, w)."""
    if height >= width:
        return int(height * size / width), size
    return size, int(width * size / height)


def hero_crop_offsets(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """HERO's centre-crop offsets ``(y, x) = (int((h - size) / 2), int((w - size) / 2))`` of the resized frame."""
    return int((height - size) / 2.0), int((width - size) / 2.0)


class ClipViTB32Video(Extractor):
    """HERO/VALUE "clip-vit" video features: ViT-B/32 ``encode_image`` (512) per frame sampled every 1.5 s."""

    name = "clip-vit-b32-video"
    kind = "video"
    model_name = "ViT-B-32"
    layer = "encode_image: projected CLS (visual.proj), not L2-normalised"

    def __init__(self, pretrained: str | None = None, *, interval: float = HERO_INTERVAL, **kwargs: Any) -> None:
        super().__init__(pretrained, **kwargs)
        self.interval = interval

    @property
    def outputs(self) -> dict[str, OutputSpec]:
        return {"features": OutputSpec("features", (None, 512), "float16",
                                       "one row per sampled frame (forward maps (B,3,224,224) frames to (B,512))")}

    def decode(self, src: Any) -> VideoFrames:
        """Decode the HERO-sampled frames of a video file (one decord ``get_batch``)."""
        return read_video_frames(src, interval=self.interval)

    def preprocess(self, x: Any, *, as_uint8: bool = False) -> torch.Tensor:
        """Frames ``(T, H, W, 3)`` uint8 (array, tensor or :class:`VideoFrames`) -> ``(T, 3, 224, 224)``."""
        frames = x.frames if isinstance(x, VideoFrames) else x
        t = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[-1] != 3 or t.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames (T, H, W, 3), got {t.dtype} {tuple(t.shape)}")
        size = self.image_size
        if t.shape[0] == 0:
            return torch.zeros((0, 3, size, size), dtype=torch.uint8 if as_uint8 else torch.float32)
        h, w = int(t.shape[1]), int(t.shape[2])
        rh, rw = hero_resize_dims(h, w, size)
        nchw = t.permute(0, 3, 1, 2)  # a channels_last view: the uint8 antialias kernel's fast path
        if (rh, rw) != (h, w):
            nchw = F.interpolate(nchw, size=(rh, rw), mode="bicubic", antialias=True, align_corners=False)
        y0, x0 = hero_crop_offsets(rh, rw, size)
        out = nchw[:, :, y0:y0 + size, x0:x0 + size].contiguous()
        return out if as_uint8 else self.normalize(out)

    def _forward_impl(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self.model.encode_image(x)}

    def spec_params(self) -> dict[str, Any]:
        return {**super().spec_params(),
                "sampling": {"rule": "ffmpeg fps filter (round=near) equivalent, features.decode.hero_frame_indices",
                             "interval_s": self.interval,
                             "short_video": "fps = 2 / max(int(duration), 1) when duration < interval + 0.1 s",
                             "min_frames": 1},
                "resize": "shorter side 224, longer int(L*224/S); centre crop 224 at int((L'-224)/2)",
                "resize_impl": "torch.nn.functional.interpolate(uint8, bicubic, antialias=True)",
                "decode": {"backend": "decord (PyAV fallback)", "pixel_format": "rgb24"}}


# --------------------------------------------------------------------------------------------------------- registry

EXTRACTORS: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    if cls.name in EXTRACTORS and EXTRACTORS[cls.name] is not cls:
        raise ValueError(f"extractor {cls.name!r} is already registered")
    EXTRACTORS[cls.name] = cls
    return cls


for _cls in (ClipRN101Grid, ClipViTB32Grid, ClipViTB16Grid, ClipViTB32Video):
    register_extractor(_cls)


def list_extractors() -> list[str]:
    return sorted(EXTRACTORS)


def get_extractor(name: str, **kwargs: Any) -> Extractor:
    """An extractor by registry name; ``kwargs`` go to its constructor (``pretrained=``, ``device=``, ...)."""
    try:
        cls = EXTRACTORS[name]
    except KeyError:
        raise KeyError(f"unknown extractor {name!r}; known: {', '.join(list_extractors())}") from None
    return cls(**kwargs)


__all__ = [
    "CLIP_MEAN", "CLIP_STD", "EXTRACTORS", "ClipRN101Grid", "ClipViTB16Grid", "ClipViTB32Grid", "ClipViTB32Video",
    "Extractor", "OutputSpec", "get_extractor", "hero_crop_offsets", "hero_resize_dims", "list_extractors",
    "register_extractor",
]
