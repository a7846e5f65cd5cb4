"""``FeatureStore``: create/open a store, plan incremental work, stage runs, commit snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vlpet.provenance import canonical_json, library_versions

from ..media import MediaItem, check_unique_ids, hash_file
from .errors import (
    CorruptionError,
    IncompleteRunError,
    SnapshotNotFoundError,
    SpecMismatchError,
    StaleRunError,
    StoreError,
)
from .gc import collect
from .gc import info as store_info
from .layout import (
    FORMAT,
    INDEX,
    LOCK_FILE,
    MANIFEST,
    RUN_FILE,
    TMP_PREFIX,
    WRITER_LOCK_FILE,
    Layout,
    check_id,
    create_exclusive,
    dump_json,
    fsync_dir,
    link_or_copy,
    read_json,
    tmp_name,
)
from .reader import SnapshotReader
from .segment import Segment, read_errors
from .snapshot import (
    ERROR,
    OK,
    SNAPSHOT_FORMAT,
    IndexRow,
    SnapshotInfo,
    content_digest,
    index_bytes,
    manifest_digest,
    read_index_rows,
)
from .spec import StoreSpec
from .verify import verify_store
from .writer import Run, staged_files, staged_name_sha

LIBRARIES = ("numpy", "pyarrow", "zarr", "torch", "torchvision", "open_clip_torch", "decord", "av", "pillow",
             "transformers")


def _crash_point(name: str) -> None:
    """A no-op marking the steps of ``commit``; tests replace it to simulate a crash at each step."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def weights_identity(metadata: Mapping[str, Any] | None) -> tuple | None:
    """(weights, random_init) from commit metadata, or None when neither was given."""
    if not metadata:
        return None
    w, r = metadata.get("weights"), metadata.get("random_init")
    if w is None and r is None:
        return None
    return (w, None if r is None else bool(r))


@dataclass
class Plan:
    """What a run has to do, against the parent (latest) snapshot.

    ``to_extract``: one item per content hash that is new (not in the parent, or quarantined there with
    ``retry_errors``), in media-id order; ``reused``: items whose hash the parent already holds (a renamed or
    moved file is reused, not re-extracted); ``duplicates``: items whose new hash is extracted through
    another item of ``to_extract``; ``deleted``: parent media ids absent from ``items``; ``changed``: media
    ids present in both whose hash differs.
    """

    parent: str | None
    run_id: str
    items: list[MediaItem]
    to_extract: list[MediaItem] = field(default_factory=list)
    reused: list[MediaItem] = field(default_factory=list)
    duplicates: list[MediaItem] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    weights: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"parent": self.parent, "run_id": self.run_id, "items": len(self.items),
                "to_extract": len(self.to_extract), "reused": len(self.reused), "duplicates": len(self.duplicates),
                "deleted": len(self.deleted), "changed": len(self.changed), "weights": self.weights}


def derive_run_id(spec_digest: str, parent: str | None, weights: str | None) -> str:
    """Stable run id: the staging area of "work on top of ``parent`` for this spec and these weights"."""
    key = canonical_json([FORMAT, "run", spec_digest, parent or "", weights or ""])
    return "run-" + hashlib.sha256(key.encode()).hexdigest()[:20]


class FeatureStore:
    """One store per extractor spec. See the package docstring for the layout and the guarantees."""

    def __init__(self, root: str | os.PathLike, spec: StoreSpec):
        self.root = Path(root)
        self.spec = spec
        self.layout = Layout(self.root)
        self._spec_digest = spec.digest()
        self._last_plan: Plan | None = None

    # --- opening -------------------------------------------------------------------------------------------
    @staticmethod
    def _read_store_file(root: Path) -> StoreSpec:
        layout = Layout(root)
        try:
            doc = read_json(layout.store_file)
        except FileNotFoundError:
            raise StoreError(f"{root} is not a feature store (no {layout.store_file.name})") from None
        except ValueError as e:
            raise CorruptionError(f"{layout.store_file} is not valid JSON: {e}") from e
        if doc.get("format") != FORMAT:
            raise StoreError(f"{layout.store_file}: unsupported store format {doc.get('format')!r} (want {FORMAT})")
        spec = StoreSpec.from_dict(doc["spec"])
        if doc.get("spec_digest") != spec.digest():
            raise CorruptionError(f"{layout.store_file}: spec digest does not match the spec")
        return spec

    @classmethod
    def open(cls, root: str | os.PathLike) -> FeatureStore:
        root = Path(root)
        return cls(root, cls._read_store_file(root))

    @classmethod
    def create(cls, root: str | os.PathLike, spec: StoreSpec) -> FeatureStore:
        return cls.open_or_create(root, spec)

    @classmethod
    def open_or_create(cls, root: str | os.PathLike, spec: StoreSpec) -> FeatureStore:
        """Open the store at ``root`` (it must have exactly ``spec``) or create it (atomically, race-free)."""
        root = Path(root)
        layout = Layout(root)
        if not layout.store_file.exists():
            ours = {layout.segments.name, layout.snapshots.name, layout.runs.name, LOCK_FILE, WRITER_LOCK_FILE}
            if root.is_dir():
                foreign = sorted(n for n in os.listdir(root) if n not in ours and not n.startswith(TMP_PREFIX))
                if foreign:
                    raise StoreError(f"{root} is not empty and not a feature store (found {foreign[:3]}); "
                                     f"use an empty or new directory")
            for d in (layout.segments, layout.snapshots, layout.runs):
                d.mkdir(parents=True, exist_ok=True)
            doc = {"format": FORMAT, "spec": spec.to_dict(), "spec_digest": spec.digest(), "created_utc": _now()}
            create_exclusive(layout.store_file, dump_json(doc))
        existing = cls._read_store_file(root)
        diffs = existing.differences(spec)
        if diffs:
            raise SpecMismatchError(f"the store at {root} holds another extractor spec; differing fields "
                                    f"(store != requested): " + "; ".join(diffs))
        return cls(root, existing)

    @classmethod
    def open_reader(cls, root: str | os.PathLike, snapshot: str | None = None, *,
                    verify: bool | None = None) -> SnapshotReader:
        """A read-only reader of ``snapshot`` (id, unique id prefix, or None/"latest"); ``verify`` (default
        ``reader.VERIFY_ON_MAP``, on) checks each segment's sha256 when it is first mapped in a process."""
        store = cls.open(root)
        return SnapshotReader(store.root, store.spec, store.snapshot(snapshot), verify=verify)

    def reader(self, snapshot: str | None = None, *, verify: bool | None = None) -> SnapshotReader:
        return SnapshotReader(self.root, self.spec, self.snapshot(snapshot), verify=verify)

    # --- snapshots -----------------------------------------------------------------------------------------
    def snapshot_ids(self) -> list[str]:
        return self.layout.snapshot_ids()

    def _load_snapshot(self, snap_id: str) -> SnapshotInfo:
        d = self.layout.snapshot_dir(snap_id)
        try:
            manifest = read_json(d / MANIFEST)
        except FileNotFoundError:
            raise SnapshotNotFoundError(f"snapshot {snap_id!r} not found in {self.root}") from None
        except ValueError as e:
            raise CorruptionError(f"snapshot {snap_id}: manifest.json is not valid JSON: {e}") from e
        info = SnapshotInfo.from_manifest(manifest, d)
        if info.id != snap_id:
            raise CorruptionError(f"snapshot directory {snap_id} holds the manifest of {info.id}")
        return info

    def snapshots(self) -> list[SnapshotInfo]:
        return [self._load_snapshot(s) for s in self.snapshot_ids()]

    def latest(self) -> SnapshotInfo | None:
        ids = self.snapshot_ids()
        return self._load_snapshot(ids[-1]) if ids else None

    def resolve(self, ref: str | None) -> str:
        ids = self.snapshot_ids()
        if ref is None or ref == "latest":
            if not ids:
                raise SnapshotNotFoundError(f"the store at {self.root} has no committed snapshot yet")
            return ids[-1]
        if ref in ids:
            return ref
        hits = [s for s in ids if s.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        what = "is ambiguous" if hits else "not found"
        raise SnapshotNotFoundError(f"snapshot {ref!r} {what} in {self.root}; snapshots: {', '.join(ids) or 'none'}")

    def snapshot(self, ref: str | None = None) -> SnapshotInfo:
        return self._load_snapshot(self.resolve(ref))

    def _index_rows(self, info: SnapshotInfo) -> list[IndexRow]:
        return read_index_rows(info.path / INDEX)

    # --- planning and runs ---------------------------------------------------------------------------------
    def plan(self, items: Iterable[MediaItem], *, retry_errors: bool = False, weights: str | None = None,
             reuse: bool = True) -> Plan:
        """Compare ``items`` with the latest snapshot: what to extract, what to reuse, what was deleted.

        ``retry_errors``: re-extract hashes quarantined in the parent (default: an error is a property of
        the bytes, so it is reused like a feature). ``weights``: the weights identity of this run; when the
        parent recorded another one nothing is reused, and the run id depends on it (staged features of
        other weights are never resumed). ``reuse=False``: re-extract everything.
        """
        items = sorted(items, key=lambda it: it.media_id)
        check_unique_ids(items)
        parent = self.latest()
        parent_ok: set[str] = set()
        parent_err: set[str] = set()
        parent_ids: dict[str, str] = {}
        if parent is not None:
            pw = parent.metadata.get("weights")
            if weights is not None and pw is not None and pw != weights:
                reuse = False
            for r in self._index_rows(parent):
                parent_ids[r.media_id] = r.sha256
                (parent_ok if r.status == OK else parent_err).add(r.sha256)
        plan = Plan(parent=parent.id if parent else None,
                    run_id=derive_run_id(self._spec_digest, parent.id if parent else None, weights),
                    items=items, weights=weights)
        new: set[str] = set()
        for it in items:
            h = it.sha256
            if reuse and (h in parent_ok or (h in parent_err and not retry_errors)):
                plan.reused.append(it)
            elif h in new:
                plan.duplicates.append(it)
            else:
                new.add(h)
                plan.to_extract.append(it)
            old = parent_ids.get(it.media_id)
            if old is not None and old != h:
                plan.changed.append(it.media_id)
        ids = {it.media_id for it in items}
        plan.deleted = sorted(m for m in parent_ids if m not in ids)
        self._last_plan = plan
        return plan

    def begin_run(self, run_id: str | None = None, *, plan: Plan | None = None) -> Run:
        """Create or resume the staging area of a run on top of the latest snapshot.

        Without ``run_id`` the id comes from the last ``plan`` (or the spec and the latest snapshot), so the
        same call after a crash resumes the same staging area and its finished segments.
        """
        plan = plan or self._last_plan
        latest = self.latest()
        parent = latest.id if latest else None
        if plan is not None and plan.parent != parent:
            raise StaleRunError(f"the plan was made against snapshot {plan.parent}, but the latest is {parent}; "
                                f"plan again")
        if run_id is None:
            run_id = plan.run_id if plan is not None else derive_run_id(self._spec_digest, parent, None)
        check_id("run id", run_id)
        run_dir = self.layout.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "shards").mkdir(exist_ok=True)
        doc = {"format": FORMAT, "run_id": run_id, "parent": parent, "spec_digest": self._spec_digest,
               "weights": plan.weights if plan else None, "created_utc": _now(),
               "plan": plan.summary() if plan else None}
        create_exclusive(run_dir / RUN_FILE, dump_json(doc))
        existing = read_json(run_dir / RUN_FILE)
        if existing.get("parent") != parent or existing.get("spec_digest") != self._spec_digest:
            raise StaleRunError(f"run {run_id} was staged on top of snapshot {existing.get('parent')}, "
                                f"but the latest is {parent}")
        return Run(self.root, run_id, parent, self.spec, plan)

    @contextlib.contextmanager
    def writer(self, *, wait: bool = True, on_wait: Any = None) -> Iterator[list[str]]:
        """Hold the store's writer lock for a whole run (see ``Layout.writer_lock``) and, once it is held,
        remove the orphan runs of earlier writers that can no longer commit (their parent is not the latest
        snapshot, or their RUN.json is unreadable). Yields the removed run ids."""
        from .gc import _remove

        with self.layout.writer_lock(wait=wait, on_wait=on_wait):
            with self.layout.lock():
                latest = self.latest()
                removed = [r["run_id"] for r in self.runs()
                           if r.get("broken") or r.get("parent") != (latest.id if latest else None)]
                for run_id in removed:
                    _remove(self.layout.run_dir(run_id))
            yield removed

    def open_run(self, run_id: str) -> Run:
        """An existing run's staging area (for shard processes that did not plan themselves)."""
        check_id("run id", run_id)
        try:
            doc = read_json(self.layout.run_dir(run_id) / RUN_FILE)
        except FileNotFoundError:
            raise StoreError(f"no run {run_id!r} staged in {self.root}") from None
        return Run(self.root, run_id, doc.get("parent"), self.spec)

    def runs(self) -> list[dict[str, Any]]:
        out = []
        try:
            names = sorted(os.listdir(self.layout.runs))
        except FileNotFoundError:
            return out
        for n in names:
            if n.startswith("."):
                continue
            try:
                doc = read_json(self.layout.run_dir(n) / RUN_FILE)
            except (FileNotFoundError, ValueError):
                doc = {"run_id": n, "parent": None, "broken": True}
            run = Run(self.root, n, doc.get("parent"), self.spec) if "broken" not in doc else None
            doc["shards"] = run.shard_ids() if run else []
            out.append(doc)
        return out

    # --- commit --------------------------------------------------------------------------------------------
    def _collect_staged(self, run: Run):
        staged_ok: dict[str, tuple[str, int, str, int]] = {}
        staged_err: dict[str, str] = {}
        paths: dict[str, Path] = {}
        seg_rows: dict[str, int] = {}
        for sid in run.shard_ids():
            segs, errs = staged_files(self.layout.shard_dir(run.run_id, sid))
            for p in segs:
                name = staged_name_sha(p)
                actual = hash_file(p)
                if actual != name:
                    raise CorruptionError(f"staged segment {p} does not match its checksum (sha256 {actual}); "
                                          f"delete it and re-run the shard")
                seg = Segment(p, self.spec)
                if seg.spec_digest != self._spec_digest:
                    raise CorruptionError(f"staged segment {p} was written for another spec")
                frames = seg.frames()
                for i, (h, fh) in enumerate(zip(seg.hashes(), seg.feat_hashes(), strict=True)):
                    if h not in staged_ok:
                        staged_ok[h] = (name, i, fh, int(frames[i]) if frames is not None else -1)
                paths.setdefault(name, p)
                seg_rows[name] = seg.num_rows
            for p in errs:
                for r in read_errors(p):
                    staged_err.setdefault(r["sha256"], r["reason"])
        return staged_ok, staged_err, paths, seg_rows

    def commit(self, run: Run, items: Sequence[MediaItem] | None = None,
               metadata: Mapping[str, Any] | None = None) -> SnapshotInfo:
        """Merge every shard of ``run`` with the reusable entries of its parent into a new snapshot of exactly
        ``items`` and publish it atomically as the latest.

        Every item must be resolvable (staged in some shard, ok or quarantined, or reusable from the
        parent), else ``IncompleteRunError``. When the result has the parent's content digest, no snapshot
        is created and the parent is returned. ``metadata`` (JSON) is recorded verbatim: put the weights
        identity (``weights``: e.g. the sha256 of the weights file) and ``random_init`` there; reusing parent
        features computed with other weights is refused.
        """
        if items is None:
            if run.plan is None:
                raise StoreError("commit needs the items (this run object carries no plan)")
            items = run.plan.items
        items = sorted(items, key=lambda it: it.media_id)
        check_unique_ids(items)
        metadata = dict(metadata or {})
        canonical_json(metadata)  # JSON-serialisable, no NaN
        layout = self.layout
        with layout.lock():
            latest = self.latest()
            parent_id = latest.id if latest else None
            self._check_committable(run, parent_id, metadata)
            staged_ok, staged_err, staged_paths, staged_rows = self._collect_staged(run)
            parent_by_sha, parent_ids = self._parent_rows(latest)
            rows, n_new, n_reused, reused_ok = _merge_rows(run.run_id, items, staged_ok, staged_err, parent_by_sha)
            new_w = weights_identity(metadata)
            old_w = weights_identity(latest.metadata) if latest is not None else None
            if reused_ok and old_w is not None and new_w is not None and old_w != new_w:
                raise StoreError(f"the parent snapshot {parent_id} was extracted with weights {old_w} and this commit "
                                 f"declares {new_w}: reused features would mix weights; plan(items, weights=...) "
                                 f"to re-extract everything")
            digest = content_digest(self.spec, rows)
            ids = {it.media_id for it in items}
            counts = {"media": len(rows), "ok": sum(r.status == OK for r in rows),
                      "error": sum(r.status != OK for r in rows), "new": n_new, "reused": n_reused,
                      "deleted": sum(1 for m in parent_ids if m not in ids),
                      "changed": sum(1 for it in items if parent_ids.get(it.media_id, it.sha256) != it.sha256)}
            if latest is not None and digest == latest.digest:
                _crash_point("noop")
                run.discard()
                return latest
            seg_records = self._link_segments(rows, staged_paths, staged_rows, latest)
            snap_id = self._publish_snapshot(run, latest, rows, digest, counts, seg_records, metadata)
            # 3. the staging area is no longer needed
            run.discard()
            return self._load_snapshot(snap_id)

    def _check_committable(self, run: Run, parent_id: str | None, metadata: Mapping[str, Any]) -> None:
        """The run was staged on the latest snapshot, still exists, and is committed with its planned weights."""
        if parent_id != run.parent:
            raise StaleRunError(f"run {run.run_id} was staged on top of snapshot {run.parent}, but the latest "
                                f"is now {parent_id}; plan and run again on top of the latest snapshot")
        if not run.exists():
            raise StoreError(f"run {run.run_id} has no staging area (already committed or discarded)")
        run_doc = read_json(run.path / RUN_FILE)
        if run_doc.get("weights") is not None and metadata.get("weights") not in (None, run_doc["weights"]):
            raise StoreError(f"run {run.run_id} was planned for weights {run_doc['weights']!r} but is committed "
                             f"with weights {metadata.get('weights')!r}")

    def _parent_rows(self, latest: SnapshotInfo | None) -> tuple[dict[str, IndexRow], dict[str, str]]:
        """The parent's rows by media sha256 (an ok row preferred) and its media ids' sha256."""
        parent_by_sha: dict[str, IndexRow] = {}
        parent_ids: dict[str, str] = {}
        if latest is not None:
            for r in self._index_rows(latest):
                parent_ids[r.media_id] = r.sha256
                cur = parent_by_sha.get(r.sha256)
                if cur is None or (r.status == OK and cur.status != OK):
                    parent_by_sha[r.sha256] = r
        return parent_by_sha, parent_ids

    def _link_segments(self, rows: list[IndexRow], staged_paths: Mapping[str, Path], staged_rows: Mapping[str, int],
                       latest: SnapshotInfo | None) -> dict[str, dict[str, int]]:
        """Step 1 of a commit: every referenced staged segment linked into segments/ (idempotent); returns the
        manifest's record of every segment the rows reference."""
        layout = self.layout
        seg_records: dict[str, dict[str, int]] = {}
        for name in sorted({r.segment for r in rows if r.segment is not None}):
            if name in staged_paths:
                link_or_copy(staged_paths[name], layout.segment(name))
                seg_records[name] = {"bytes": layout.segment(name).stat().st_size, "rows": staged_rows[name]}
            else:
                seg_records[name] = dict(latest.segments[name])  # type: ignore[union-attr]
        fsync_dir(layout.segments)
        _crash_point("segments-linked")
        return seg_records

    def _publish_snapshot(self, run: Run, latest: SnapshotInfo | None, rows: list[IndexRow], digest: str,
                          counts: dict[str, int], seg_records: dict[str, dict[str, int]],
                          metadata: dict[str, Any]) -> str:
        """Step 2 of a commit: the snapshot directory, built under a temporary name and renamed (the commit
        point); returns its id."""
        layout = self.layout
        seq = latest.seq + 1 if latest is not None else 1
        snap_id = f"{seq:06d}-{digest[:12]}"
        idx = index_bytes(rows)
        manifest = {
            "format": SNAPSHOT_FORMAT, "id": snap_id, "seq": seq, "parent": latest.id if latest else None,
            "created_utc": _now(), "run_id": run.run_id, "spec": self.spec.to_dict(),
            "spec_digest": self._spec_digest, "content_digest": digest, "counts": counts,
            "index": {"file": INDEX, "sha256": hashlib.sha256(memoryview(idx)).hexdigest(), "bytes": idx.size,
                      "rows": len(rows)},
            "segments": {k: {"sha256": k, **v} for k, v in seg_records.items()},
            "metadata": metadata, "library_versions": library_versions(LIBRARIES),
            "writer": {"host": platform.node(), "pid": os.getpid(), "argv0": sys.argv[0] if sys.argv else ""},
        }
        manifest["manifest_digest"] = manifest_digest(manifest)
        tmp = tmp_name(layout.snapshots)
        tmp.mkdir()
        for fname, data in ((INDEX, idx), (MANIFEST, dump_json(manifest))):
            _write_read_only(tmp / fname, data)
        fsync_dir(tmp)
        _crash_point("snapshot-written")
        os.rename(tmp, layout.snapshot_dir(snap_id))
        fsync_dir(layout.snapshots)
        _crash_point("published")
        return snap_id

    # --- maintenance ---------------------------------------------------------------------------------------
    def gc(self, keep: Iterable[str] = (), *, keep_latest: bool = True, dry_run: bool = False):
        return collect(self, keep=keep, keep_latest=keep_latest, dry_run=dry_run)

    def verify(self, snapshot: str | None = None, *, all_snapshots: bool | None = None):
        return verify_store(self, snapshot=snapshot, all_snapshots=all_snapshots)

    def info(self) -> dict[str, Any]:
        return store_info(self)


def _write_read_only(path: Path, data: Any) -> None:
    """Write ``data`` to a new read-only file and fsync it (a snapshot's files never change)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _merge_rows(run_id: str, items: Sequence[MediaItem], staged_ok: Mapping[str, Any], staged_err: Mapping[str, str],
                parent_by_sha: Mapping[str, IndexRow]) -> tuple[list[IndexRow], int, int, bool]:
    """One index row per item: staged features first, then the parent's features, then a staged or inherited
    quarantine; ``(rows, new, reused, whether parent features were reused)``. An item with none of them is
    an ``IncompleteRunError`` naming the first few."""
    rows: list[IndexRow] = []
    missing: list[MediaItem] = []
    n_new = n_reused = 0
    reused_ok = False
    for it in items:
        h = it.sha256
        p = parent_by_sha.get(h)
        if h in staged_ok:
            seg, i, fh, fr = staged_ok[h]
            rows.append(IndexRow(it.media_id, it.rel_path, h, it.kind, it.size, OK, None, seg, i, fr, fh))
            n_new += 1
        elif p is not None and p.status == OK:
            rows.append(IndexRow(it.media_id, it.rel_path, h, it.kind, it.size, OK, None, p.segment, p.row,
                                 p.frames, p.feat_sha256))
            n_reused += 1
            reused_ok = True
        elif h in staged_err:
            rows.append(IndexRow(it.media_id, it.rel_path, h, it.kind, it.size, ERROR, staged_err[h], None,
                                 -1, -1, None))
            n_new += 1
        elif p is not None:
            rows.append(IndexRow(it.media_id, it.rel_path, h, it.kind, it.size, ERROR, p.reason, None, -1,
                                 -1, None))
            n_reused += 1
        else:
            missing.append(it)
    if missing:
        names = ", ".join(f"{m.media_id} ({m.rel_path})" for m in missing[:5])
        raise IncompleteRunError(f"run {run_id}: {len(missing)} of {len(items)} media are neither staged "
                                 f"nor reusable (a shard not finished or not flushed?): {names}"
                                 + (" ..." if len(missing) > 5 else ""), missing)
    return rows, n_new, n_reused, reused_ok
