"""The media index: media_id -> relative path, sha256, size, kind, for every image or video under a root.

``media_id`` is the file name without its extension, the VL-T5 / VALUE convention that names feature
files (``COCO_val2014_000000391895``, ``dev-850-0-img0``, ``s03e02_seg02_clip_10``); two files with the
same id would silently share features, so duplicates are an error. Hashes are streamed and computed
in a thread pool (hashlib releases the GIL), so indexing is bounded by disk, not by Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Literal

import pyarrow as pa

from features.media import hash_file
from pipelines.tables.arrow_io import attach_metadata
from pipelines.tables.schemas import MEDIA_INDEX_SCHEMA, build_table

MediaKind = Literal["image", "video"]
_GLOB_CHARS = frozenset("*?[")


class DuplicateMediaIdError(ValueError):
    """Two files map to the same media_id (and would share one feature entry)."""


def media_id_of(rel_path: str) -> str:
    """``val2014/COCO_val2014_000000391895.jpg`` -> ``COCO_val2014_000000391895``."""
    return PurePosixPath(rel_path).stem


def _select(root: Path, rel_paths_or_glob: str | Sequence[str | Path]) -> list[str]:
    """Relative POSIX paths of the files to index: a glob pattern, or explicit paths that must exist."""
    if isinstance(rel_paths_or_glob, str) and _GLOB_CHARS & set(rel_paths_or_glob):
        found = (p for p in root.glob(rel_paths_or_glob) if p.is_file())
        # Hidden files are never media (editor/partial-download leftovers such as .x.tmp).
        return sorted(p.relative_to(root).as_posix() for p in found if not p.name.startswith("."))
    items = [rel_paths_or_glob] if isinstance(rel_paths_or_glob, str) else list(rel_paths_or_glob)
    resolved_root = root.resolve()
    out = []
    for item in items:
        path = root / item
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed for the media index but not a file")
        if not path.resolve().is_relative_to(resolved_root):
            raise ValueError(f"{item}: resolves outside the media root {root}")
        out.append(path.relative_to(root).as_posix())
    return sorted(out)


def build_media_index(
    root: Path,
    rel_paths_or_glob: str | Sequence[str | Path],
    kind: MediaKind,
    *,
    workers: int = 8,
) -> pa.Table:
    """Index media files under ``root`` (a glob such as ``"**/*.jpg"`` or a list of relative paths)."""
    if kind not in ("image", "video"):
        raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: media root is not a directory")
    rel_paths = _select(root, rel_paths_or_glob)
    first: dict[str, str] = {}
    for rel in rel_paths:
        media_id = media_id_of(rel)
        if not media_id:
            raise ValueError(f"{root / rel}: cannot derive a media_id from this file name")
        if media_id in first:
            raise DuplicateMediaIdError(
                f"duplicate media_id {media_id!r}: {root / first[media_id]} and {root / rel}"
            )
        first[media_id] = rel

    def digest(rel: str) -> tuple[str, int]:
        path = root / rel
        return hash_file(path), path.stat().st_size

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(digest, rel_paths))
    columns = {
        "media_id": [media_id_of(rel) for rel in rel_paths],
        "rel_path": rel_paths,
        "sha256": [sha for sha, _ in digests],
        "size": [size for _, size in digests],
        "kind": [kind] * len(rel_paths),
    }
    table = build_table(columns, MEDIA_INDEX_SCHEMA)
    return attach_metadata(
        table, family="media_index", dataset=root.name, split="all", sources=[],
        extra={"root": str(root), "kind": kind},
    )
