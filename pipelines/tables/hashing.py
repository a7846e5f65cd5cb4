"""Streamed sha256 of files: provenance for table metadata and content keys for the media index."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20


def sha256_file(path: Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file read in chunks (media files can be large; never read whole)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceDigest:
    """A source file a table was parsed from, identified by content so lineage survives moves."""

    path: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return Path(self.path).name

    def to_dict(self) -> dict[str, str | int]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "size": self.size}


def digest_file(path: Path) -> SourceDigest:
    """Describe a source file by path, sha256 and size."""
    path = Path(path)
    return SourceDigest(path=str(path), sha256=sha256_file(path), size=path.stat().st_size)
