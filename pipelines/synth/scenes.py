"""Still scenes of coloured shapes: the learnable content behind every synthetic image.

A scene is 1-3 shapes (circle / square / triangle) in six well-separated colours, each in its own
named slot (left / right / top / bottom / middle) on a plain light background. Slots never overlap,
so the pixel at a shape's centre always has the shape's colour; questions, captions and statements
are computed from the ``Scene`` record, and tests can check them against the decoded pixels too.
Images are drawn with PIL (no anti-aliasing) and encoded with pinned encoder settings so the bytes
are reproducible for a given Pillow/libjpeg/zlib build.
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (246, 246, 246),
    "grey": (214, 214, 214),
    "beige": (236, 226, 204),
}
# Slot centres as fractions of (width, height). Spacing keeps shapes of radius <= 0.13*min(w, h) apart.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.2, 0.5),
    "right": (0.8, 0.5),
    "top": (0.5, 0.2),
    "bottom": (0.5, 0.8),
    "middle": (0.5, 0.5),
}

JPEG_QUALITY = 90


@dataclass(frozen=True)
class Shape:
    """One drawn shape: kind, colour name, slot name, centre (px) and radius (px)."""

    kind: str
    color: str
    position: str
    cx: int
    cy: int
    size: int


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    background: str
    shapes: tuple[Shape, ...]

    def kinds(self) -> list[str]:
        return [s.kind for s in self.shapes]

    def count(self, kind: str | None = None, color: str | None = None) -> int:
        return sum(1 for s in self.shapes if (kind is None or s.kind == kind) and (color is None or s.color == color))

    def unique(self, kind: str, color: str | None = None) -> Shape | None:
        """The only shape of this kind (and colour), or None when there are zero or several."""
        found = [s for s in self.shapes if s.kind == kind and (color is None or s.color == color)]
        return found[0] if len(found) == 1 else None

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "background": self.background,
                "shapes": [asdict(s) for s in self.shapes]}


def random_scene(rng: random.Random, width: int, height: int, n_shapes: int | None = None) -> Scene:
    """1-3 shapes in distinct slots, never two with the same (kind, colour)."""
    n = n_shapes if n_shapes is not None else rng.choice((1, 2, 2, 3, 3))
    slots = rng.sample(list(POSITIONS), n)
    base = min(width, height)
    shapes: list[Shape] = []
    used: set[tuple[str, str]] = set()
    for slot in slots:
        while True:
            kind, color = rng.choice(SHAPES), rng.choice(list(COLORS))
            if (kind, color) not in used:
                used.add((kind, color))
                break
        fx, fy = POSITIONS[slot]
        cx = round(width * (fx + rng.uniform(-0.03, 0.03)))
        cy = round(height * (fy + rng.uniform(-0.03, 0.03)))
        size = round(base * rng.uniform(0.10, 0.13))
        shapes.append(Shape(kind=kind, color=color, position=slot, cx=cx, cy=cy, size=size))
    return Scene(width=width, height=height, background=rng.choice(list(BACKGROUNDS)), shapes=tuple(shapes))


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
               fill: tuple[int, int, int]) -> None:
    """Draw one shape of 'radius' ``r`` centred at (cx, cy); the centre pixel is always inside it."""
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        h = r * 0.85
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.8), (cx + r * 0.95, cy + r * 0.8)], fill=fill)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def render_scene(scene: Scene) -> Image.Image:
    img = Image.new("RGB", (scene.width, scene.height), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for s in scene.shapes:
        draw_shape(draw, s.kind, s.cx, s.cy, s.size, COLORS[s.color])
    return img


def jpeg_bytes(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Baseline JPEG with every encoder option pinned (no EXIF, no optimisation pass, 4:2:0)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    """PNG with a pinned zlib level and no ancillary chunks."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def nearest_color(rgb: tuple[int, int, int]) -> str:
    """The palette colour closest to ``rgb`` (for checking decoded pixels against the scene record)."""
    return min(COLORS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLORS[name], rgb, strict=True)))
