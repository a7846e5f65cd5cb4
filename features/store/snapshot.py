"""Snapshots: an immutable manifest (JSON) plus an index (Arrow IPC) over content-addressed segments.

``snapshots/<seq:06d>-<digest[:12]>/``
    ``manifest.json``  id, seq, parent, created time, run id, spec digest, **content digest**, counts,
                       the index file's sha256/bytes/rows, every referenced segment (sha256, bytes, rows),
                       the caller's metadata (weights identity, random-init flag, device ...) and library
                       versions.
    ``index.arrow``    one row per media item, sorted by media id: media_id, rel_path, sha256, kind, size,
                       status (``ok``/``error``), reason, segment, row, frames, feat_sha256.

The directory is built under a temporary name and renamed into place: the rename is the commit point,
and ``latest`` is simply the snapshot with the highest sequence number.

Content digest (``SnapshotInfo.content_digest()``): sha256 over ``"vlpet-feature-store/content/1\\n"``, the
spec digest, then one canonical-JSON line per index row in media-id order:
``[media_id, rel_path, sha256, kind, size, status, reason or "", shape or null, feat_sha256 or ""]`` where
``shape`` is the sample's array shape and ``feat_sha256`` the sha256 of its feature bytes (C order,
little-endian). It excludes times, ids, metadata and the segment layout (which shard/segment/row holds a
sample), so two stores with the same samples and the same feature bytes have the same digest whatever
the sharding, the flush sizes or the crashes on the way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from vlpet.provenance import canonical_json

from .errors import CorruptionError
from .segment import arrow_array
from .spec import StoreSpec

SNAPSHOT_FORMAT = "vlpet-feature-store/snapshot/1"
CONTENT_DIGEST_VERSION = b"vlpet-feature-store/content/1\n"
OK, ERROR = "ok", "error"

INDEX_SCHEMA = pa.schema([
    ("media_id", pa.string()), ("rel_path", pa.string()), ("sha256", pa.string()), ("kind", pa.string()),
    ("size", pa.int64()), ("status", pa.string()), ("reason", pa.string()), ("segment", pa.string()),
    ("row", pa.int64()), ("frames", pa.int64()), ("feat_sha256", pa.string()),
], metadata={"format": "vlpet-feature-index/1"})


@dataclass(frozen=True)
class IndexRow:
    media_id: str
    rel_path: str
    sha256: str
    kind: str
    size: int
    status: str
    reason: str | None
    segment: str | None
    row: int  # -1 for errors
    frames: int  # ragged ok rows: T_i; otherwise -1
    feat_sha256: str | None

    def shape(self, spec: StoreSpec) -> list[int] | None:
        if self.status != OK:
            return None
        return [self.frames, *spec.row_shape] if spec.ragged else list(spec.shape)


@dataclass(frozen=True)
class QuarantineRecord:
    """A sample whose extraction failed: where it is, what its bytes hash to, and why it failed."""

    media_id: str
    rel_path: str
    sha256: str
    reason: str


@dataclass(frozen=True)
class SnapshotInfo:
    """A committed snapshot (from its manifest). ``content_digest()`` is the digest defined above."""

    id: str
    seq: int
    parent: str | None
    created_utc: str
    run_id: str | None
    spec_digest: str
    digest: str
    counts: Mapping[str, int]
    metadata: Mapping[str, Any]
    library_versions: Mapping[str, str]
    segments: Mapping[str, Mapping[str, int]]
    index: Mapping[str, Any]
    path: Path = field(compare=False)

    def content_digest(self) -> str:
        return self.digest

    @property
    def n_ok(self) -> int:
        return int(self.counts.get("ok", 0))

    @property
    def n_error(self) -> int:
        return int(self.counts.get("error", 0))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], path: Path) -> SnapshotInfo:
        if manifest.get("format") != SNAPSHOT_FORMAT:
            raise CorruptionError(f"snapshot {path.name}: unknown manifest format {manifest.get('format')!r}")
        try:
            return cls(id=manifest["id"], seq=int(manifest["seq"]), parent=manifest.get("parent"),
                       created_utc=manifest["created_utc"], run_id=manifest.get("run_id"),
                       spec_digest=manifest["spec_digest"], digest=manifest["content_digest"],
                       counts=dict(manifest["counts"]), metadata=dict(manifest.get("metadata") or {}),
                       library_versions=dict(manifest.get("library_versions") or {}),
                       segments={k: dict(v) for k, v in manifest["segments"].items()},
                       index=dict(manifest["index"]), path=path)
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptionError(f"snapshot {path.name}: manifest is missing or has a bad field: {e}") from e

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "parent": self.parent, "created_utc": self.created_utc,
                "run_id": self.run_id, "content_digest": self.digest, "counts": dict(self.counts),
                "segments": len(self.segments), "metadata": dict(self.metadata)}


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a manifest without its own ``manifest_digest`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_digest"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def content_digest(spec: StoreSpec, rows: Iterable[IndexRow]) -> str:
    h = hashlib.sha256(CONTENT_DIGEST_VERSION)
    h.update(spec.digest().encode() + b"\n")
    prev = None
    for r in rows:
        if prev is not None and r.media_id <= prev:
            raise ValueError("content_digest needs rows sorted by unique media id")
        prev = r.media_id
        rec = [r.media_id, r.rel_path, r.sha256, r.kind, int(r.size), r.status, r.reason or "", r.shape(spec),
               r.feat_sha256 or ""]
        h.update(canonical_json(rec).encode() + b"\n")
    return h.hexdigest()


def index_bytes(rows: Sequence[IndexRow]) -> pa.Buffer:
    cols = [arrow_array([getattr(r, f.name) for r in rows], f.type) for f in INDEX_SCHEMA]
    batch = pa.record_batch(cols, schema=INDEX_SCHEMA)
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, INDEX_SCHEMA) as w:
        w.write_batch(batch)
    return sink.getvalue()


def read_index_table(path: Path) -> pa.Table:
    try:
        with pa.memory_map(str(path), "r") as src:
            table = ipc.open_file(src).read_all()
    except pa.ArrowInvalid as e:
        raise CorruptionError(f"index {path} is not a readable Arrow IPC file: {e}") from e
    if not table.schema.equals(INDEX_SCHEMA, check_metadata=False):
        raise CorruptionError(f"index {path} has an unexpected schema: {table.schema}")
    return table


def read_index_rows(path: Path) -> list[IndexRow]:
    table = read_index_table(path)
    cols = [table.column(n).to_pylist() for n in INDEX_SCHEMA.names]
    return [IndexRow(*vals) for vals in zip(*cols, strict=True)]
