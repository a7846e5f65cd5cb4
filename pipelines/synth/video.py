"""Short videos of moving coloured shapes, written as H.264 mp4 with PyAV.

A clip has one or two shapes (distinct kinds and colours), each in its own lane, each moving left,
right, up, down or staying still at constant speed over the whole clip, so "which direction does the
red circle move?" is answerable from any sampling of the frames (features are taken every 1.5 s).
The encoder is pinned for reproducible bytes: libx264, one thread, no B-frames, fixed CRF/preset,
``+bitexact`` on stream and container (no encoder version or creation time in the file), and frames
handed over already in yuv420p (converted here, ``rgb_to_yuv420p``): with RGB frames, PyAV's swscale
conversion made about one clip in four generations differ in its bytes. Frame ``i`` has pts ``i`` in time
base 1/fps, so decoders report exactly ``n_frames`` frames at ``fps``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from pipelines.synth.scenes import BACKGROUNDS, COLORS, SHAPES, draw_shape

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "none")
_AXIS_DIRS = {"h": ("left", "right"), "v": ("up", "down")}


@dataclass(frozen=True)
class MovingShape:
    kind: str
    color: str
    direction: str  # left | right | up | down | none
    x0: float
    y0: float
    x1: float
    y1: float
    size: int

    def at(self, t: float) -> tuple[float, float]:
        """Centre at normalised time t in [0, 1]."""
        return self.x0 + (self.x1 - self.x0) * t, self.y0 + (self.y1 - self.y0) * t


@dataclass(frozen=True)
class Clip:
    width: int
    height: int
    fps: int
    n_frames: int
    background: str
    shapes: tuple[MovingShape, ...]

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def movers(self, direction: str) -> list[MovingShape]:
        return [s for s in self.shapes if s.direction == direction]

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fps": self.fps, "n_frames": self.n_frames,
                "duration": self.duration, "background": self.background,
                "shapes": [asdict(s) for s in self.shapes]}


def random_clip(rng: random.Random, width: int, height: int, fps: int, n_frames: int) -> Clip:
    """One or two shapes on separate lanes of one axis; at least one moves unless the clip is one frame."""
    axis = rng.choice(("h", "v"))
    n = 1 if n_frames == 1 else rng.choice((1, 2, 2))
    kinds = rng.sample(SHAPES, n)
    colors = rng.sample(list(COLORS), n)
    lanes = [0.5] if n == 1 else [0.3, 0.7]
    size = round(min(width, height) * rng.uniform(0.10, 0.13))
    dirs: list[str] = []
    for _ in range(n):
        if n_frames == 1:
            dirs.append("none")
        else:
            dirs.append(rng.choice((*_AXIS_DIRS[axis], *_AXIS_DIRS[axis], "none")))
    if n_frames > 1 and all(d == "none" for d in dirs):
        dirs[rng.randrange(n)] = rng.choice(_AXIS_DIRS[axis])
    shapes = []
    for kind, color, lane, d in zip(kinds, colors, lanes, dirs, strict=True):
        a, b = 0.2 + rng.uniform(-0.04, 0.04), 0.8 + rng.uniform(-0.04, 0.04)
        if d == "none":
            a = b = rng.uniform(0.3, 0.7)
        elif d in ("left", "up"):
            a, b = b, a
        if axis == "h":
            x0, x1, y0, y1 = a * width, b * width, lane * height, lane * height
        else:
            x0, x1, y0, y1 = lane * width, lane * width, a * height, b * height
        shapes.append(MovingShape(kind, color, d, round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2), size))
    return Clip(width, height, fps, n_frames, rng.choice(list(BACKGROUNDS)), tuple(shapes))


def frames(clip: Clip) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3)."""
    for i in range(clip.n_frames):
        t = i / (clip.n_frames - 1) if clip.n_frames > 1 else 0.0
        img = Image.new("RGB", (clip.width, clip.height), BACKGROUNDS[clip.background])
        draw = ImageDraw.Draw(img)
        for s in clip.shapes:
            x, y = s.at(t)
            draw_shape(draw, s.kind, x, y, s.size, COLORS[s.color])
        yield np.asarray(img)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the (H*3/2, W) planar yuv420p array PyAV takes: BT.601 limited range, chroma
    averaged over 2x2 blocks; pure numpy, so the same pixels always give the same bytes."""
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {w}x{h}")
    # The 2x2 chroma blocks are averaged in RGB first; integer BT.601 (the usual 8-bit fixed-point form) keeps
    # this cheap next to the encoder.
    x = rgb.astype(np.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    q = x.reshape(h // 2, 2, w // 2, 2, 3).sum(axis=(1, 3))
    qr, qg, qb = q[..., 0], q[..., 1], q[..., 2]  # 4x the block means
    cb = ((-38 * qr - 74 * qg + 112 * qb + 512) >> 10) + 128
    cr = ((112 * qr - 94 * qg - 18 * qb + 512) >> 10) + 128
    planes = np.concatenate([y.ravel(), cb.ravel(), cr.ravel()])
    return np.clip(planes, 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def write_mp4(path: Path, clip: Clip, crf: int = 20) -> None:
    """Encode ``clip`` to ``path`` (H.264, yuv420p, pinned settings; see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=clip.fps)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "bf": "0", "flags": "+bitexact"}
        for i, array in enumerate(frames(clip)):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(array), format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
