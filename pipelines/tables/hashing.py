"""Source files described by content (path, sha256, size): provenance for table metadata and the media index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from features.media import hash_file


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
    return SourceDigest(path=str(path), sha256=hash_file(path), size=path.stat().st_size)
