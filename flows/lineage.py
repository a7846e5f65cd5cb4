"""Lineage: one JSON record per artifact, from raw files to metrics, stored with the data.

Records are appended as JSON lines to ``<data_root>/.vlpet/lineage.jsonl`` under an exclusive ``flock`` on
``lineage.lock`` (one ``write`` of one complete line, then fsync), so concurrent writers never interleave
and readers (which take no lock) only ever skip a torn last line. When ``record`` runs inside a Prefect
flow or task run, it also publishes the record as a Prefect Markdown artifact and a
``vlpet.artifact.recorded`` event (resource ``vlpet.artifact.<id>``); outside Prefect it is a plain function.

A record (``LineageRecord``): ``id`` (``"<kind>:" + sha256[:16]`` of the artifact's content), ``kind``
(``raw``, ``table``, ``media-index``, ``features``, ``task-table``, ``checkpoint``, ``metrics``...), ``path``,
``sha256``, ``inputs`` (``[{"id", "sha256", "path"}]``), ``params``, ``code_version``, ``versions`` (torch,
transformers, open_clip, prefect, pyarrow, numpy, python), ``device``, ``counts``, ``timings``, ``flags``
(``synthetic_data``, ``random_init_weights``: inherited from the inputs, so an evaluation built on synthetic
data or random-init weights says so), ``stage``, ``created`` (UTC ISO time) and ``extra``.

``LineageStore(root).tree(id)`` follows inputs back to the raw files; ``vlpet lineage PATH_OR_ID`` prints it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from flows.caching import FileHasher, vlpet_dir
from vlpet.provenance import library_versions as shared_library_versions

LINEAGE_FILE = "lineage.jsonl"
INHERITED_FLAGS = ("synthetic_data", "random_init_weights")
VERSION_PACKAGES = ("torch", "transformers", "open_clip_torch", "prefect", "prefect-dask", "dask", "pyarrow",
                    "numpy", "vlpet")


library_versions = partial(shared_library_versions, VERSION_PACKAGES)  # the one helper, vlpet.provenance


def artifact_id(kind: str, sha256: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", kind):
        raise ValueError(f"lineage kind {kind!r}: use lowercase letters, digits, '-' and '_'")
    if not re.fullmatch(r"[0-9a-f]{16,}", sha256):
        raise ValueError(f"lineage sha256 {sha256!r} is not a hex digest")
    return f"{kind}:{sha256[:16]}"


@dataclass
class LineageRecord:
    id: str
    kind: str
    path: str
    sha256: str
    inputs: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    code_version: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    stage: str | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineageRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


class LineageStore:
    """The lineage records of one data root (``<root>/.vlpet/lineage.jsonl``)."""

    def __init__(self, root: str | os.PathLike[str], hasher: FileHasher | None = None) -> None:
        self.root = Path(root)
        self.dir = vlpet_dir(self.root)
        self.path = self.dir / LINEAGE_FILE
        self.lock_path = self.dir / "lineage.lock"
        self.hasher = hasher or FileHasher(self.dir / "cache" / "filehash.sqlite")

    # ---------------------------------------------------------------------------------------- writing

    def _input_entry(self, item: Any) -> dict[str, Any]:
        if isinstance(item, LineageRecord):
            return {"id": item.id, "sha256": item.sha256, "path": item.path}
        if isinstance(item, str):
            rec = self.get(item)
            if rec is None:
                raise KeyError(f"lineage input {item!r}: no such record in {self.path}")
            return {"id": rec.id, "sha256": rec.sha256, "path": rec.path}
        if isinstance(item, Mapping) and "id" in item:
            return {"id": str(item["id"]), "sha256": item.get("sha256"), "path": item.get("path")}
        raise TypeError(f"lineage input {item!r}: give a LineageRecord, a record id, or a dict with 'id'")

    def record(self, kind: str, path: str | os.PathLike[str], inputs: Iterable[Any] = (),
               params: Mapping[str, Any] | None = None, *, sha256: str | None = None,
               code_version: str | None = None, device: str | None = None,
               counts: Mapping[str, Any] | None = None, timings: Mapping[str, float] | None = None,
               flags: Mapping[str, bool] | None = None, stage: str | None = None,
               extra: Mapping[str, Any] | None = None, publish: bool = True) -> LineageRecord:
        """Append a record for the artifact at ``path`` (its content hash: ``sha256`` or computed: a file's
        sha256, a folder's tree digest). ``inputs``: records, record ids, or ``{"id", "sha256", "path"}``.
        ``synthetic_data`` / ``random_init_weights`` flags are OR-ed with those of the inputs."""
        p = Path(path)
        digest = sha256 or self.hasher.digest(p)
        entries = [self._input_entry(i) for i in inputs]
        merged: dict[str, bool] = {k: bool(v) for k, v in (flags or {}).items()}
        for e in entries:
            parent = self.get(e["id"])
            if parent is not None:
                for flag in INHERITED_FLAGS:
                    if parent.flags.get(flag):
                        merged[flag] = True
        for flag in INHERITED_FLAGS:
            merged.setdefault(flag, False)
        rec = LineageRecord(
            id=artifact_id(kind, digest), kind=kind, path=str(p.resolve()) if not str(path).startswith(("s3:", "gs:"))
            else str(path), sha256=digest, inputs=entries, params=dict(params or {}), code_version=code_version,
            versions=library_versions(), device=device, counts=dict(counts or {}),
            timings={k: round(float(v), 4) for k, v in (timings or {}).items()}, flags=merged, stage=stage,
            created=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), extra=dict(extra or {}))
        self.append(rec)
        if publish:
            publish_to_prefect(rec)
        return rec

    def ensure(self, kind: str, path: str | os.PathLike[str], *, sha256: str | None = None,
               **kwargs: Any) -> LineageRecord:
        """The latest record of ``path`` if it still has this content, else a new record (``record`` kwargs).
        Lets a stage link to inputs made outside the flows (a table prepared by hand, a raw folder)."""
        digest = sha256 or self.hasher.digest(path)
        found = self.find(path)
        if found is not None and found.sha256 == digest and found.kind == kind:
            return found
        return self.record(kind, path, sha256=digest, **kwargs)

    def append(self, rec: LineageRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(rec.as_dict(), sort_keys=True, default=str) + "\n").encode()
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    # ---------------------------------------------------------------------------------------- reading

    def records(self) -> Iterator[LineageRecord]:
        """Every complete record in file order (a torn last line from a killed writer is skipped)."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                with contextlib.suppress(ValueError, TypeError):
                    yield LineageRecord.from_dict(json.loads(raw))

    def _index(self) -> tuple[dict[str, LineageRecord], dict[str, LineageRecord]]:
        try:
            st = self.path.stat()
            stamp: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        cached = getattr(self, "_cached_index", None)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1], cached[2]
        by_id: dict[str, LineageRecord] = {}
        by_path: dict[str, LineageRecord] = {}
        for rec in self.records():
            by_id[rec.id] = rec  # the latest record of an id wins (same content, newer context)
            by_path[rec.path] = rec
        self._cached_index = (stamp, by_id, by_path)
        return by_id, by_path

    def get(self, record_id: str) -> LineageRecord | None:
        """The latest record with this id (a unique id prefix such as ``features:3f2a`` also works)."""
        by_id, _ = self._index()
        if record_id in by_id:
            return by_id[record_id]
        hits = [r for k, r in by_id.items() if k.startswith(record_id)] if ":" in record_id else []
        return hits[0] if len({h.id for h in hits}) == 1 else None

    def find(self, path: str | os.PathLike[str]) -> LineageRecord | None:
        """The latest record written for ``path`` (resolved)."""
        _, by_path = self._index()
        return by_path.get(str(Path(path).resolve())) or by_path.get(str(path))

    def resolve(self, path_or_id: str) -> LineageRecord | None:
        """A record by id, else by path."""
        return self.get(path_or_id) if ":" in path_or_id and not Path(path_or_id).exists() else (
            self.find(path_or_id) or self.get(path_or_id))

    def tree(self, record_id: str, *, max_depth: int = 32) -> dict[str, Any]:
        """The record and, recursively, its inputs' records (``{"id", "kind", "path", ..., "inputs": [...]}``);
        an input without a record (e.g. a raw file recorded elsewhere) is a leaf with ``"recorded": False``."""
        by_id, _ = self._index()
        if record_id not in by_id:
            rec = self.get(record_id)
            if rec is None:
                raise KeyError(f"no lineage record {record_id!r} in {self.path}")
            record_id = rec.id

        def node(rid: str, entry: Mapping[str, Any] | None, depth: int, seen: frozenset[str]) -> dict[str, Any]:
            rec = by_id.get(rid)
            if rec is None:
                return {"id": rid, "path": (entry or {}).get("path"), "sha256": (entry or {}).get("sha256"),
                        "recorded": False, "inputs": []}
            d = {k: v for k, v in rec.as_dict().items() if k not in ("inputs", "versions")}
            d["versions"] = rec.versions
            d["recorded"] = True
            if rid in seen or depth >= max_depth:
                d["inputs"] = []
                d["truncated"] = True
                return d
            d["inputs"] = [node(e["id"], e, depth + 1, seen | {rid}) for e in rec.inputs]
            return d

        return node(record_id, None, 0, frozenset())


def find_root(path_or_id: str, start: str | os.PathLike[str] | None = None) -> Path:
    """The data root owning ``path_or_id``: the nearest parent holding ``.vlpet/lineage.jsonl``, else ``start``
    (default: the current directory)."""
    p = Path(path_or_id)
    if p.exists():
        for parent in [p.resolve(), *p.resolve().parents]:
            if (vlpet_dir(parent) / LINEAGE_FILE).is_file():
                return parent
    return Path(start or ".")


# ------------------------------------------------------------------------------------------------ Prefect


def _artifact_key(rec: LineageRecord) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"lineage-{rec.kind}-{rec.sha256[:16]}".lower())


def to_markdown(rec: LineageRecord) -> str:
    flags = ", ".join(f"**{k}**" for k, v in rec.flags.items() if v) or "none"
    rows = [f"| `{i['id']}` | `{i.get('path')}` |" for i in rec.inputs]
    return "\n".join([
        f"### {rec.kind} `{rec.id}`", "", f"- path: `{rec.path}`", f"- sha256: `{rec.sha256}`",
        f"- stage: {rec.stage}", f"- flags: {flags}", f"- device: {rec.device}",
        f"- code version: `{(rec.code_version or '')[:16]}`",
        f"- counts: `{json.dumps(rec.counts, default=str)}`", f"- timings (s): `{json.dumps(rec.timings)}`",
        f"- params: `{json.dumps(rec.params, default=str, sort_keys=True)}`", "",
        "| input | path |", "|---|---|", *rows])


def publish_to_prefect(rec: LineageRecord) -> bool:
    """Inside a Prefect flow/task run: a Markdown artifact and a ``vlpet.artifact.recorded`` event.
    Outside one (or when Prefect is unreachable) it does nothing and returns False."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover - prefect is a dependency of the flows package
        return False
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return False
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.events import emit_event

        create_markdown_artifact(markdown=to_markdown(rec), key=_artifact_key(rec),
                                 description=f"vlpet lineage record {rec.id}")
        emit_event(event="vlpet.artifact.recorded",
                   resource={"prefect.resource.id": f"vlpet.artifact.{rec.id}",
                             "prefect.resource.name": rec.path, "vlpet.kind": rec.kind},
                   payload={"id": rec.id, "kind": rec.kind, "path": rec.path, "sha256": rec.sha256,
                            "inputs": [i["id"] for i in rec.inputs], "flags": rec.flags, "stage": rec.stage})
    except Exception as exc:  # lineage is on disk already; publishing is best effort
        import logging

        logging.getLogger(__name__).warning("lineage %s: publishing to Prefect failed: %s", rec.id, exc)
        return False
    return True
