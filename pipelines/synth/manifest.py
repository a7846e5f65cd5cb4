"""The synthetic data manifest: every file written, with size and SHA-256, and per-source counts.

The manifest is the contract between the generator and its consumers: tests check files against it,
and the downloader (pointed at a loopback mirror of the output directory) can verify what it fetched
and how many records/images/videos each split should hold, without re-deriving anything. It contains
no timestamps or host details, so the same seed and scale give a byte-identical ``manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from features.media import hash_file

MANIFEST_NAME = "manifest.json"
Report = tuple[dict[str, dict[str, int]], dict[str, int]]  # what each source writer returns: (counts, extras)
FORMAT = "vlpet-synth-manifest"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    """One written file. ``path`` is POSIX, relative to the output directory; ``source`` is its dataset."""

    path: str
    size: int
    sha256: str
    source: str


@dataclass
class SynthManifest:
    """What ``generate`` wrote.

    ``counts[source][split]`` maps count names to integers for disjoint splits: ``records`` (annotation
    records: questions, captions, examples, moments), ``images`` / ``videos`` (media files written for that
    split; VQA, whose images are COCO's, says ``images_used``) and a few source-specific numbers
    (``descs`` for TVC, ``true_labels`` for NLVR2). Summing a
    source's splits never double counts. ``extras[source]`` holds file-level numbers that are not splits
    (vocabulary sizes, subtitle records, the VALUE test file that merges two splits, ...).
    ``ground_truth`` names the file that records what was drawn in every image and video (for tests and
    debugging; not an upstream file).
    """

    scale: str
    seed: int
    files: list[FileEntry] = field(default_factory=list)
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    extras: dict[str, dict[str, int]] = field(default_factory=dict)
    ground_truth: str = "scenes.json"
    format: str = FORMAT
    version: int = FORMAT_VERSION

    # -- queries ---------------------------------------------------------------------------------
    def file(self, path: str) -> FileEntry:
        """The entry for ``path`` (KeyError if it was not written)."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    def paths(self, source: str | None = None) -> list[str]:
        """Relative paths of all files, or of one source's files."""
        return [e.path for e in self.files if source is None or e.source == source]

    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)

    def totals(self) -> dict[str, dict[str, int]]:
        """Per source, the counts summed over its splits (for summaries)."""
        out: dict[str, dict[str, int]] = {}
        for source, splits in self.counts.items():
            agg: dict[str, int] = {}
            for numbers in splits.values():
                for key, value in numbers.items():
                    agg[key] = agg.get(key, 0) + value
            out[source] = agg
        return out

    def verify(self, root: Path) -> list[str]:
        """Problems found when checking every listed file under ``root`` (empty list = all good)."""
        problems: list[str] = []
        for entry in self.files:
            path = Path(root) / entry.path
            if not path.is_file():
                problems.append(f"missing: {entry.path}")
                continue
            if path.stat().st_size != entry.size:
                problems.append(f"size mismatch: {entry.path}")
            elif hash_file(path) != entry.sha256:
                problems.append(f"sha256 mismatch: {entry.path}")
        return problems

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "scale": self.scale,
            "seed": self.seed,
            "ground_truth": self.ground_truth,
            "counts": {s: {k: dict(sorted(v.items())) for k, v in sorted(splits.items())}
                       for s, splits in sorted(self.counts.items())},
            "extras": {s: dict(sorted(v.items())) for s, v in sorted(self.extras.items())},
            "files": [asdict(e) for e in sorted(self.files, key=lambda e: e.path)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthManifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a synth manifest (format={data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported synth manifest version {data.get('version')!r}")
        return cls(scale=data["scale"], seed=data["seed"], ground_truth=data["ground_truth"],
                   counts=data["counts"], extras=data.get("extras", {}),
                   files=[FileEntry(**e) for e in data["files"]])

    def save(self, root: Path) -> Path:
        path = Path(root) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, root_or_file: Path) -> SynthManifest:
        path = Path(root_or_file)
        if path.is_dir():
            path = path / MANIFEST_NAME
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
