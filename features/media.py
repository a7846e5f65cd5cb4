"""Media items and content hashing: what the feature store is keyed by.

A media file is identified by the sha256 of its bytes (``MediaItem.sha256``); its ``media_id`` is the
file name without extension (the id the annotation tables use) and ``rel_path`` the POSIX path relative
to the media root. ``scan_media`` walks a media root and hashes every file (streaming, 1 MiB chunks).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

MediaKind = Literal["image", "video"]

IMAGE_EXTS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VIDEO_EXTS: frozenset[str] = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg"})
HASH_CHUNK = 1 << 20


class DuplicateMediaIdError(ValueError):
    """Two files of one kind under one media root have the same media id (file name without extension)."""


class MediaPathError(ValueError):
    """A media path is absolute, climbs out with ``..``, or (through a symlink) resolves outside the media root."""


def resolve_inside(root: str | os.PathLike, rel_path: str) -> Path:
    """``root / rel_path`` with symlinks resolved, refused (``MediaPathError``) unless it stays inside ``root``.

    Symlinks that stay inside the root are fine; anything else would let an index or a link read any file."""
    rel = Path(rel_path)
    if not rel_path or rel.is_absolute() or ".." in rel.parts:
        raise MediaPathError(f"media path {rel_path!r} must be relative to the media root without '..'")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise MediaPathError(f"media path {rel_path!r} resolves outside the media root (a symlink to {target})")
    return target


@dataclass(frozen=True)
class MediaItem:
    """One media file: its id, its path relative to the media root, the sha256 of its bytes, its kind, its size."""

    media_id: str
    rel_path: str
    sha256: str
    kind: MediaKind
    size: int

    def __post_init__(self) -> None:
        if not self.media_id:
            raise ValueError("MediaItem.media_id must not be empty")
        if self.kind not in ("image", "video"):
            raise ValueError(f"MediaItem.kind must be 'image' or 'video', got {self.kind!r}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"MediaItem.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size < 0:
            raise ValueError(f"MediaItem.size must be >= 0, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MediaItem:
        return cls(media_id=str(d["media_id"]), rel_path=str(d["rel_path"]), sha256=str(d["sha256"]),
                   kind=d["kind"], size=int(d["size"]))

    @classmethod
    def from_path(cls, root: str | os.PathLike, path: str | os.PathLike, kind: MediaKind | None = None) -> MediaItem:
        """Hash ``path`` (a file under ``root``) into a MediaItem; ``kind`` defaults to the one its extension names."""
        root, path = Path(root), Path(path)
        kind = kind or kind_of(path)
        return cls(media_id=path.stem, rel_path=path.relative_to(root).as_posix(), sha256=hash_file(path),
                   kind=kind, size=path.stat().st_size)


def hash_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike, chunk_size: int = HASH_CHUNK) -> str:
    """sha256 (hex) of a file's bytes, streamed in ``chunk_size`` chunks (constant memory)."""
    h = hashlib.sha256()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def kind_of(path: str | os.PathLike) -> MediaKind:
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise ValueError(f"cannot tell whether {str(path)!r} is an image or a video from its extension {ext!r}")


def _norm_ext(ext: str) -> str:
    ext = ext.lower()
    return ext if ext.startswith(".") else "." + ext


def scan_media(root: str | os.PathLike,
               exts: Iterable[str] | Mapping[str, MediaKind] | None = None, *, kind: MediaKind | None = None,
               refused: list[tuple[str, str]] | None = None) -> list[MediaItem]:
    """Every media file under ``root`` (recursive), hashed, sorted by relative path.

    ``exts``: the extensions to take (case-insensitive, with or without the dot; default: every known image
    and video extension); a mapping ``{ext: kind}`` also sets the kind, otherwise the kind follows the
    extension; ``kind`` keeps only files of that kind (the others are not even hashed). Hidden files and
    directories (names starting with ``.``) are skipped. Two files of the same kind with the same media id (file
    name without extension) are an error that names both paths; an image and a video may share an id. Files that
    resolve outside ``root`` (symlinks) are skipped and listed in ``refused`` as ``(rel_path, reason)``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"media root {str(root)!r} is not a directory")
    if exts is None:
        kinds: dict[str, MediaKind] = {e: "image" for e in IMAGE_EXTS} | {e: "video" for e in VIDEO_EXTS}
    elif isinstance(exts, Mapping):
        kinds = {_norm_ext(e): k for e, k in exts.items()}
    else:
        kinds = {}
        for e in exts:
            e = _norm_ext(e)
            kinds[e] = kind_of("x" + e)
    if kind is not None:
        kinds = {e: k for e, k in kinds.items() if k == kind}
    paths: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() in kinds and p.is_file():
                paths.append((p.relative_to(root).as_posix(), p))
    paths.sort(key=lambda t: t[0])
    seen: dict[tuple[str, str], str] = {}
    items: list[MediaItem] = []
    for rel, p in paths:
        mid, k = p.stem, kinds[p.suffix.lower()]
        try:
            p = resolve_inside(root, rel)
        except MediaPathError as e:
            if refused is not None:
                refused.append((rel, f"outside-media-root: {e}"))
            continue
        if (k, mid) in seen:
            raise DuplicateMediaIdError(f"duplicate {k} id {mid!r}: {seen[k, mid]!r} and {rel!r} "
                                        f"(under {str(root)!r}); rename one of them")
        seen[k, mid] = rel
        items.append(MediaItem(media_id=mid, rel_path=rel, sha256=hash_file(p), kind=k, size=p.stat().st_size))
    return items


def check_unique_ids(items: Iterable[MediaItem]) -> None:
    """Raise DuplicateMediaIdError when two items of one kind share a media id (naming both paths)."""
    seen: dict[tuple[str, str], str] = {}
    for it in items:
        key = (it.kind, it.media_id)
        if key in seen:
            raise DuplicateMediaIdError(
                f"duplicate {it.kind} id {it.media_id!r}: {seen[key]!r} and {it.rel_path!r}")
        seen[key] = it.rel_path
