"""Decode images and videos into RGB pixels, and classify bad media with a clear reason.

Every failure that is the media's fault raises :class:`BadMediaError` ``(path, reason, detail)``; ``reason`` is one of
:data:`BAD_MEDIA_REASONS`, so a feature store can record per-sample validity. A missing file is not bad media: it
raises ``FileNotFoundError`` (the media index is stale, which is a pipeline error).

Images (:func:`decode_image`)
    PIL open -> size guard -> optional JPEG draft -> full load -> EXIF orientation (``ImageOps.exif_transpose``)
    -> RGB (:func:`to_rgb`). Decisions:

    - *Truncated files are an error by default* (reason ``truncated``). VL-Adapter's ``coco_CLIP.py`` set
      ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` (the missing part decodes as grey); ``allow_truncated=True`` does
      the same per call: JPEGs get an EOI marker appended in memory (identical pixels to PIL's global flag, and
      thread-safe); other formats are re-decoded with PIL's process-global flag set under a lock (not safe against
      *other* threads decoding strict at the same moment; decoding processes are).
    - *Decompression bombs*: images with more than ``max_pixels`` pixels (default PIL's 89,478,485) are rejected
      from the header, before any pixel is decoded (reason ``too-large``). PIL's own ``DecompressionBombError`` (and
      its warning, when warnings are errors) map to the same reason. PIL's process-global ``MAX_IMAGE_PIXELS`` is
      not modified: a ``max_pixels`` above 2x that value is still capped by PIL.
    - *Alpha* (``RGBA``, ``LA``, ``PA``, ``P`` with transparency, premultiplied modes) is composited over
      ``alpha_background``, default **white**, as image viewers show it on a page; black would erase dark
      foregrounds of transparent logos and clip-art. (The paper's script did ``convert("RGB")``, which drops alpha
      and exposes whatever colour the transparent pixels store; COCO/GQA/NLVR2 are opaque JPEGs, so the paper's
      features are unaffected.)
    - *16-bit* (``I;16*``) is scaled to 8 bits as ``round(v * 255 / 65535)``; PIL's ``convert`` would clip every value
      above 255 to white. ``I`` (32-bit int) is taken as the 16-bit range [0, 65535] (clipped), ``F`` as [0, 1] when
      its maximum is <= 1 and [0, 255] otherwise. CMYK, greyscale, palette, YCbCr and bilevel use PIL's
      ``convert("RGB")``; embedded ICC profiles are not applied (neither did the paper's recipe).
    - Multi-frame files (GIF, APNG, TIFF pages) use their first frame. Corrupt EXIF is ignored (no rotation).
    - ``jpeg_draft`` (:func:`fast_decode_for_clip`): JPEG DCT-domain downscaling (``Image.draft``) by 1/2, 1/4 or 1/8
      while both sides stay >= the target, before the bicubic resize. 2-4x faster on large photos, but the pixels
      differ slightly from full decode + resize, so it is OFF by default (paper-exact recipe) and is part of
      :meth:`ImageDecodeOptions.as_dict` for the store spec.

Videos (:func:`read_video_frames`)
    decord ``VideoReader(path, ctx=cpu(0))``; all sampled frames are fetched with ONE ``get_batch`` call (unique,
    sorted indices; duplicates are expanded afterwards). Sampling (:func:`hero_frame_indices`) reproduces HERO /
    VALUE's ``ffmpeg -vf fps=F`` decode, with ``F = 1/1.5`` (one frame every 1.5 s) and, for videos shorter than
    1.5 + 0.1 s, ``F = 2 / max(int(duration), 1)`` (HERO_Video_Feature_Extractor ``clip/video_loader.py``). The
    exact equivalent of ffmpeg's fps filter (defaults ``round=near``, ``eof_action=round``, start at the first
    frame) for a constant-frame-rate stream of ``N`` frames at ``r`` fps is:

    - input frame ``i`` (time ``i/r``) is assigned to output tick ``round_half_up(i * F / r)``;
    - output tick ``n`` (time ``n/F``) shows the *last* frame assigned to a tick ``<= n``, i.e.
      ``index(n) = min(N - 1, ceil((n + 1/2) * r / F) - 1)`` — the last frame before ``(n + 1/2) / F`` seconds, so
      at 1 frame / 1.5 s the frames come from just before 0.75 s, 2.25 s, 3.75 s, ...;
    - the number of ticks is ``round_half_up(N / r * F)`` (the stream end rescaled like the frames), but at least 1
      (ffmpeg would output nothing for a clip shorter than half a tick; we keep one frame).

    Computed in exact rational arithmetic (the fps is rationalised with ``Fraction.limit_denominator(10000)``, so
    29.97 is 30000/1001). Example: 10 s at 10 fps -> 7 frames, indices 7, 22, 37, 52, 67, 82, 97. Duration is
    ``N / r`` (HERO's short-video test used ffprobe's container duration; they agree for ordinary files).
    Variable-frame-rate streams are treated as constant-rate at decord's average fps (decord indexes frames the same
    way); ffmpeg would use the real timestamps, so such files may get different frames.

    Explicit ``times`` map to the frame shown at that time, ``floor(t * r)`` clipped to ``[0, N-1]``.

    Fallback: when decord cannot open or decode a file, PyAV decodes it (two passes: count packets if the stream
    does not state its frame count, then decode, keeping only the wanted frames) and a warning is logged. Only when
    PyAV fails too is the file bad media: ``corrupt`` (a recognised container that cannot be opened, e.g. an mp4 cut
    before its moov atom), ``truncated`` (opens, but frames listed in the index cannot be decoded), ``not-video``
    (no recognised container, or an image file), ``no-video-stream``, ``no-frames``, ``empty``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

BAD_MEDIA_REASONS = (
    "empty",            # zero bytes
    "not-image",        # not a recognisable image (e.g. a text file named .jpg)
    "not-video",        # not a recognisable video container (or an image file named .mp4)
    "corrupt",          # recognised format, but broken structure or data
    "truncated",        # the file ends before its pixel data / frames do
    "too-large",        # decompression-bomb guard (pixel count above the limit)
    "unsupported",      # a pixel mode that cannot be converted to RGB
    "no-video-stream",  # a container without a video stream
    "no-frames",        # a video stream without decodable frames
)

PIL_DEFAULT_MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS's default
HERO_INTERVAL = 1.5                  # seconds between sampled frames (VALUE "clip-vit" features)
HERO_SHORT_SLACK = 0.1               # HERO: a video is "short" when duration < interval + 0.1 s


class BadMediaError(Exception):
    """The media file cannot be decoded; ``reason`` is one of :data:`BAD_MEDIA_REASONS`."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = "") -> None:
        if reason not in BAD_MEDIA_REASONS:
            raise ValueError(f"unknown bad-media reason {reason!r}")
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        super().__init__(self.path, reason, detail)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason, "detail": self.detail}

    def stable_reason(self) -> str:
        """``"<reason>: <detail>"`` without the file's location or object addresses: what a store records, so
        the same bytes quarantined from any folder give the same snapshot digest."""
        detail = stable_detail(self.detail, self.path)
        return f"{self.reason}: {detail}" if detail else self.reason


_OBJECT_REPR = re.compile(r"<[A-Za-z_][\w.]* object at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def stable_detail(text: str, *paths: str | os.PathLike[str] | None) -> str:
    """``text`` with each of ``paths`` (and its resolved form) replaced by ``<file>`` and object reprs and
    memory addresses masked: a message that is a function of the bytes, not of where they live."""
    out = str(text)
    for p in paths:
        if not p or os.fspath(p) == "<bytes>":
            continue
        for form in sorted({os.fspath(p), os.path.abspath(p), os.path.realpath(p)}, key=len, reverse=True):
            out = out.replace(form, "<file>")
    out = _OBJECT_REPR.sub("<object>", out)
    return _ADDRESS.sub("0x…", out).strip()


@contextlib.contextmanager
def captured_native_stderr(sink: list[str]) -> Iterator[None]:
    """Redirect file descriptor 2 (where libav/ffmpeg, decord and libjpeg print) into a temporary file for the
    block, then append what was written to ``sink``: native decoder noise becomes part of a quarantine reason
    instead of interleaving with the progress bar. Python-level ``sys.stderr`` writes go there too meanwhile."""
    import sys

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (some embedded interpreters): nothing to capture
        yield
        return
    tmp = _capture_file()
    tmp.seek(0)
    tmp.truncate()
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        text = tmp.read(8192).decode("utf-8", "replace").strip()
        if text:
            sink.append(text)


_CAPTURE: dict[int, Any] = {}


def _capture_file() -> Any:
    """One anonymous temporary file per process (reused: a decode per image must not create a file each time)."""
    pid = os.getpid()
    f = _CAPTURE.get(pid)
    if f is None:
        _CAPTURE.clear()  # a forked child must not share its parent's file offset
        f = _CAPTURE[pid] = tempfile.TemporaryFile()
    return f


# --------------------------------------------------------------------------------------------------------------- images

@dataclass(frozen=True)
class ImageDecodeOptions:
    """How images are decoded; part of a feature store's spec (it changes the pixels)."""

    max_pixels: int | None = PIL_DEFAULT_MAX_PIXELS
    allow_truncated: bool = False
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    jpeg_draft: int | None = None  # target side for Image.draft; None = full decode (paper-exact)
    exif_transpose: bool = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["alpha_background"] = list(self.alpha_background)
        return d


_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def _looks_like_image(head: bytes) -> bool:
    return head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


_TRUNCATED_LOCK = threading.Lock()


def _source_name(src: Any) -> str:
    return "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else os.fspath(src)


def _read_bytes(src: str | os.PathLike[str] | bytes) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    return Path(src).read_bytes()


def _open_and_load(data: bytes, name: str, opts: ImageDecodeOptions) -> Image.Image:
    """PIL open + size guard + draft + load, errors mapped to BadMediaError (truncation raises reason 'truncated')."""
    try:
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadMediaError(name, "too-large", str(e)) from None
    except UnidentifiedImageError as e:
        reason = "corrupt" if _looks_like_image(data[:16]) else "not-image"
        raise BadMediaError(name, reason, str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadMediaError(name, "corrupt", f"{type(e).__name__}: {e}") from None
    w, h = im.size
    if opts.max_pixels is not None and w * h > opts.max_pixels:
        raise BadMediaError(name, "too-large", f"{w}x{h} = {w * h} pixels > limit {opts.max_pixels}")
    if w <= 0 or h <= 0:
        raise BadMediaError(name, "corrupt", f"image size {w}x{h}")
    if opts.jpeg_draft and im.format == "JPEG":
        im.draft(None, (opts.jpeg_draft, opts.jpeg_draft))
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadMediaError(name, "too-large", str(e)) from None
    except OSError as e:
        msg = str(e)
        reason = "truncated" if "truncated" in msg or "premature end" in msg.lower() else "corrupt"
        raise BadMediaError(name, reason, msg) from None
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        raise BadMediaError(name, "corrupt", f"{type(e).__name__}: {e}") from None
    return im


def _load_tolerating_truncation(data: bytes, name: str, opts: ImageDecodeOptions) -> Image.Image:
    if data[:3] == b"\xff\xd8\xff":
        # libjpeg treats an EOI marker as the end of the scan: the rest decodes as grey, exactly like PIL's
        # LOAD_TRUNCATED_IMAGES, without touching process-global state.
        return _open_and_load(data + b"\xff\xd9", name, opts)
    with _TRUNCATED_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return _open_and_load(data, name, opts)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _sixteen_bit_to_l(arr: np.ndarray) -> Image.Image:
    a = np.clip(arr.astype(np.int64), 0, 65535)
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (see the module docstring for the rules). Raises ValueError if impossible."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_to_l(np.asarray(im)).convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" and "transparency" not in im.info:
        return im.convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBA", "RGBa") or (mode == "L" and "transparency" in im.info) or (
            mode == "RGB" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, tuple(background))
        out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, HSV, ... (ValueError if PIL cannot)


def decode_image(src: str | os.PathLike[str] | bytes, options: ImageDecodeOptions | None = None,
                 **overrides: Any) -> Image.Image:
    """Decode an image file (path or bytes) to a loaded 8-bit RGB PIL image; raises :class:`BadMediaError`.

    ``overrides`` replace fields of ``options`` (e.g. ``decode_image(p, allow_truncated=True)``).
    """
    opts = replace(options or ImageDecodeOptions(), **overrides) if overrides else (options or ImageDecodeOptions())
    name = _source_name(src)
    data = _read_bytes(src)  # FileNotFoundError propagates: a missing file is not bad media
    if not data:
        raise BadMediaError(name, "empty", "zero-byte file")
    try:
        im = _open_and_load(data, name, opts)
    except BadMediaError as e:
        if e.reason != "truncated" or not opts.allow_truncated:
            raise
        im = _load_tolerating_truncation(data, name, opts)
        log.debug("%s is truncated; decoded anyway (allow_truncated=True)", name)
    if opts.exif_transpose:
        try:
            ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to do
        except Exception as e:  # corrupt EXIF must not lose an otherwise good image
            log.warning("%s: ignoring unreadable EXIF orientation (%s: %s)", name, type(e).__name__, e)
    try:
        return to_rgb(im, opts.alpha_background)
    except (ValueError, OSError) as e:
        raise BadMediaError(name, "unsupported", f"cannot convert mode {im.mode!r} to RGB: {e}") from None


def fast_decode_for_clip(src: str | os.PathLike[str] | bytes, size: int = 224,
                         options: ImageDecodeOptions | None = None) -> Image.Image:
    """:func:`decode_image` with JPEG draft-mode downscaling for a ``size`` x ``size`` target (not paper-exact)."""
    return decode_image(src, replace(options or ImageDecodeOptions(), jpeg_draft=size))


# --------------------------------------------------------------------------------------------------------------- videos

@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    duration: float  # num_frames / fps
    width: int
    height: int


@dataclass
class VideoFrames:
    """Decoded frames ``(T, H, W, 3)`` uint8 RGB, their frame indices and timestamps (``index / fps``, seconds)."""

    frames: np.ndarray
    indices: np.ndarray
    times: np.ndarray
    info: VideoInfo
    backend: str = "decord"
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _rational_fps(fps: float | Fraction) -> Fraction:
    if isinstance(fps, Fraction):
        return fps
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"invalid frame rate {fps!r}")
    return Fraction(fps).limit_denominator(10000)


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def hero_sampling_fps(duration: float, interval: float = HERO_INTERVAL) -> Fraction:
    """HERO/VALUE's output frame rate: ``1/interval``, or ``2/max(int(duration), 1)`` for short videos."""
    f = 1 / Fraction(str(interval))
    if 0 < duration < interval + HERO_SHORT_SLACK:
        f = Fraction(2, max(int(duration), 1))
    return f


def ffmpeg_fps_indices(num_frames: int, video_fps: float | Fraction, out_fps: float | Fraction) -> np.ndarray:
    """Indices of the frames ``ffmpeg -vf fps=out_fps`` would output for a constant-rate stream (see module doc)."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    r = _rational_fps(video_fps)
    f = out_fps if isinstance(out_fps, Fraction) else Fraction(str(out_fps))
    if f <= 0:
        raise ValueError(f"invalid output frame rate {out_fps!r}")
    count = max(_round_half_up(Fraction(num_frames) / r * f), 1)
    idx = [min(num_frames - 1, math.ceil((n + Fraction(1, 2)) * r / f) - 1) for n in range(count)]
    return np.asarray(idx, dtype=np.int64)


def hero_frame_indices(num_frames: int, video_fps: float | Fraction, interval: float = HERO_INTERVAL) -> np.ndarray:
    """The frames HERO/VALUE's extractor samples: one every ``interval`` s, ffmpeg fps-filter semantics."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    r = _rational_fps(video_fps)
    duration = float(Fraction(num_frames) / r)
    return ffmpeg_fps_indices(num_frames, r, hero_sampling_fps(duration, interval))


def times_to_indices(times: Sequence[float], video_fps: float, num_frames: int) -> np.ndarray:
    """The frame shown at each time ``t`` (seconds): ``floor(t * fps)``, clipped to ``[0, num_frames - 1]``."""
    t = np.asarray(times, dtype=np.float64)
    if t.size and not np.isfinite(t).all():
        raise ValueError("times must be finite")
    idx = np.floor(t * float(video_fps) + 1e-9).astype(np.int64)
    return np.clip(idx, 0, max(num_frames - 1, 0))


_VIDEO_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def _looks_like_video(head: bytes) -> bool:
    return (head[4:8] in _VIDEO_BOX_TYPES or head.startswith(b"\x1a\x45\xdf\xa3")  # mp4/mov, mkv/webm
            or (head[:4] == b"RIFF" and head[8:11] == b"AVI") or head.startswith((b"FLV", b"OggS", b"\x00\x00\x01\xba"))
            or (head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47")  # mpeg-ts
            or head[:4] == b"\x30\x26\xb2\x75")  # asf/wmv


class _DecodeFailure(Exception):
    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(stage, detail)
        self.stage, self.detail = stage, detail  # stage: "open" | "frames" | "empty" | "fps"


def _select(n: int, fps: float, indices: Sequence[int] | None, times: Sequence[float] | None,
            interval: float) -> np.ndarray:
    if indices is not None:
        sel = np.asarray(indices, dtype=np.int64).reshape(-1)
        if sel.size and (sel.min() < 0 or sel.max() >= n):
            raise IndexError(f"frame indices out of range [0, {n - 1}]: {sel.min()}..{sel.max()}")
        return sel
    if times is not None:
        return times_to_indices(times, fps, n)
    return hero_frame_indices(n, fps, interval)


def _read_decord(path: str, indices, times, interval, num_threads: int) -> VideoFrames:
    from decord import VideoReader, cpu

    try:
        vr = VideoReader(path, ctx=cpu(0), num_threads=num_threads)
    except Exception as e:  # decord raises DECORDError / RuntimeError with ffmpeg's message
        raise _DecodeFailure("open", f"{type(e).__name__}: {str(e)[:300]}") from None
    try:
        n = len(vr)
        if n <= 0:
            raise _DecodeFailure("empty", "the video stream has no frames")
        fps = float(vr.get_avg_fps())
        if not (math.isfinite(fps) and fps > 0):
            raise _DecodeFailure("fps", f"invalid frame rate {fps!r}")
        sel = _select(n, fps, indices, times, interval)
        uniq, inverse = np.unique(sel, return_inverse=True)
        try:
            batch = vr.get_batch(uniq.tolist()).asnumpy() if uniq.size else np.zeros((0, 0, 0, 3), np.uint8)
        except Exception as e:
            raise _DecodeFailure("frames", f"{type(e).__name__}: {str(e)[:300]}") from None
        frames = batch[inverse.reshape(-1)] if uniq.size != sel.size else batch
        h, w = (int(batch.shape[1]), int(batch.shape[2])) if batch.size else (0, 0)
        info = VideoInfo(n, fps, n / fps, w, h)
        return VideoFrames(np.ascontiguousarray(frames), sel, sel / fps, info, "decord")
    finally:
        del vr


def _read_pyav(path: str, indices, times, interval) -> VideoFrames:
    import av

    try:
        container = av.open(path)
    except Exception as e:
        raise _DecodeFailure("open", f"{type(e).__name__}: {str(e)[:300]}") from None
    with container:
        if not container.streams.video:
            raise _DecodeFailure("no-video-stream", "the container has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else float("nan")
        if not (math.isfinite(fps) and fps > 0):
            raise _DecodeFailure("fps", f"invalid frame rate {fps!r}")
        n = int(stream.frames or 0)
        if n <= 0:  # count packets carrying a frame (cheap: no decoding)
            try:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
            except Exception as e:
                raise _DecodeFailure("open", f"{type(e).__name__}: {str(e)[:300]}") from None
            container.seek(0, stream=stream)
        if n <= 0:
            raise _DecodeFailure("empty", "the video stream has no frames")
        sel = _select(n, fps, indices, times, interval)
        wanted = set(sel.tolist())
        last = max(wanted) if wanted else -1
        got: dict[int, np.ndarray] = {}
        i = -1
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
        except Exception as e:
            raise _DecodeFailure("frames", f"decoding stopped after frame {i}: {type(e).__name__}: {e}") from None
        missing = wanted - got.keys()
        if missing:
            raise _DecodeFailure("frames", f"frames {sorted(missing)[:5]}... not decodable ({n} in the index, "
                                           f"{i + 1} decoded)")
        frames = np.stack([got[j] for j in sel.tolist()]) if sel.size else np.zeros((0, 0, 0, 3), np.uint8)
        h, w = (int(frames.shape[1]), int(frames.shape[2])) if frames.size else (stream.height, stream.width)
        info = VideoInfo(n, fps, n / fps, w, h)
        return VideoFrames(np.ascontiguousarray(frames), sel, sel / fps, info, "pyav")


def _bad_video(path: str, head: bytes, failure: _DecodeFailure, other: _DecodeFailure | None) -> BadMediaError:
    detail = failure.detail + (f"; decord: {other.detail}" if other is not None else "")
    stage = failure.stage
    if stage == "open":
        reason = "corrupt" if _looks_like_video(head) else "not-video"
    elif stage == "frames":
        reason = "truncated"
    elif stage == "no-video-stream":
        reason = "no-video-stream"
    elif stage == "empty":
        reason = "no-frames"
    else:
        reason = "corrupt"
    return BadMediaError(path, reason, detail)


def read_video_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int] | None = None,
    *,
    times: Sequence[float] | None = None,
    interval: float = HERO_INTERVAL,
    backend: str = "auto",
    num_threads: int = 0,
) -> VideoFrames:
    """Decode the sampled frames of a video: ``indices``, else the frames at ``times``, else HERO/VALUE sampling.

    All frames come from one decord ``get_batch`` call. ``backend``: ``"auto"`` (decord, PyAV if decord fails),
    ``"decord"`` or ``"pyav"``. Raises :class:`BadMediaError` (see the module docstring), ``FileNotFoundError``
    for a missing file and ``IndexError`` for explicit indices outside the video.
    """
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"unknown backend {backend!r}")
    if indices is not None and times is not None:
        raise ValueError("pass indices or times, not both")
    p = os.fspath(path)
    if os.path.getsize(p) == 0:  # FileNotFoundError propagates
        raise BadMediaError(p, "empty", "zero-byte file")
    with open(p, "rb") as f:
        head = f.read(512)
    if _looks_like_image(head):
        raise BadMediaError(p, "not-video", "the file is an image")
    decord_failure: _DecodeFailure | None = None
    if backend in ("auto", "decord"):
        try:
            return _read_decord(p, indices, times, interval, num_threads)
        except _DecodeFailure as e:
            decord_failure = e
            if backend == "decord":
                raise _bad_video(p, head, e, None) from None
    try:
        out = _read_pyav(p, indices, times, interval)
    except _DecodeFailure as e:
        raise _bad_video(p, head, e, decord_failure) from None
    if decord_failure is not None:
        log.warning("decord could not read %s (%s: %s); decoded it with PyAV instead", p, decord_failure.stage,
                    decord_failure.detail)
        out.meta["decord_error"] = decord_failure.detail
    return out


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, fps, duration and size of a video without decoding its frames (PyAV container metadata)."""
    import av

    p = os.fspath(path)
    if os.path.getsize(p) == 0:
        raise BadMediaError(p, "empty", "zero-byte file")
    try:
        with av.open(p) as c:
            if not c.streams.video:
                raise BadMediaError(p, "no-video-stream", "the container has no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            fps = float(rate) if rate else float("nan")
            n = int(s.frames or 0)
            return VideoInfo(n, fps, n / fps if n and fps > 0 else float("nan"), int(s.width), int(s.height))
    except BadMediaError:
        raise
    except Exception as e:
        with open(p, "rb") as f:
            head = f.read(512)
        raise BadMediaError(p, "corrupt" if _looks_like_video(head) else "not-video", str(e)[:300]) from None


__all__ = [
    "BAD_MEDIA_REASONS", "HERO_INTERVAL", "PIL_DEFAULT_MAX_PIXELS", "BadMediaError", "ImageDecodeOptions",
    "VideoFrames", "VideoInfo", "decode_image", "fast_decode_for_clip", "ffmpeg_fps_indices", "hero_frame_indices",
    "hero_sampling_fps", "probe_video", "read_video_frames", "times_to_indices", "to_rgb",
]
