"""Garbage collection (``gc``) and the store summary (``info``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from .layout import TMP_PREFIX, dir_size, read_json
from .view import StoreView

TRASH_PREFIX = ".trash-"


@dataclass
class GcReport:
    kept: list[str]
    removed_snapshots: list[str] = field(default_factory=list)
    removed_segments: list[str] = field(default_factory=list)
    removed_runs: list[str] = field(default_factory=list)
    removed_tmp: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(path) -> int:
    try:
        if os.path.isdir(path):
            return dir_size(path)[0]
        return os.lstat(path).st_size
    except FileNotFoundError:
        return 0


def _remove(path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def collect(store: StoreView, keep=(), *, keep_latest: bool = True, dry_run: bool = False) -> GcReport:
    """Delete every snapshot except the latest (``keep_latest``) and those named in ``keep``, then every
    committed segment no kept snapshot references, the staging areas of runs that can no longer commit
    (their parent is not the latest snapshot), and temporary leftovers of killed processes.

    Snapshots go first (renamed away atomically, then deleted), segments after: a crash in the middle
    never leaves a kept snapshot pointing at a deleted segment. Serialised with ``commit`` by the store lock.
    Readers already holding a map of a deleted segment keep working (POSIX unlink semantics).
    """
    layout = store.layout
    with layout.lock():
        ids = layout.snapshot_ids()
        kept = {store.resolve(k) for k in keep}
        if keep_latest and ids:
            kept.add(ids[-1])
        latest = ids[-1] if ids else None
        report = GcReport(kept=sorted(kept), dry_run=dry_run)
        referenced: set[str] = set()
        for s in sorted(kept):
            referenced |= set(store._load_snapshot(s).segments)
        report.removed_snapshots = [s for s in ids if s not in kept]
        report.removed_segments = [n for n in layout.segment_names() if n not in referenced]
        for run in store.runs():
            if run.get("broken") or run.get("parent") != latest:
                report.removed_runs.append(run["run_id"])
        tmp_paths = []
        for d in (layout.snapshots, layout.segments, layout.runs):
            with contextlib.suppress(FileNotFoundError):
                tmp_paths += [d / n for n in os.listdir(d) if n.startswith((TMP_PREFIX, TRASH_PREFIX))]
        report.removed_tmp = [str(p.relative_to(layout.root)) for p in tmp_paths]
        report.freed_bytes = (sum(_size(layout.snapshot_dir(s)) for s in report.removed_snapshots)
                              + sum(_size(layout.segment(n)) for n in report.removed_segments)
                              + sum(_size(layout.run_dir(r)) for r in report.removed_runs)
                              + sum(_size(p) for p in tmp_paths))
        if dry_run:
            return report
        for s in report.removed_snapshots:
            trash = layout.snapshots / f"{TRASH_PREFIX}{s}"
            os.rename(layout.snapshot_dir(s), trash)
            _remove(trash)
        for n in report.removed_segments:
            _remove(layout.segment(n))
        for r in report.removed_runs:
            _remove(layout.run_dir(r))
        for p in tmp_paths:
            _remove(p)
        return report


def info(store: StoreView) -> dict[str, Any]:
    """Spec, snapshots, latest counts, size on disk, runs in staging."""
    layout = store.layout
    snaps = store.snapshots()
    latest = snaps[-1] if snaps else None
    total, files = dir_size(layout.root)
    seg_names = layout.segment_names()
    seg_bytes = sum(layout.segment(n).stat().st_size for n in seg_names)
    runs = []
    for r in store.runs():
        rdir = layout.run_dir(r["run_id"])
        runs.append({"run_id": r["run_id"], "parent": r.get("parent"), "shards": r.get("shards", []),
                     "bytes": dir_size(rdir)[0], "stale": bool(r.get("broken")) or r.get("parent") != (
                         latest.id if latest else None)})
    try:
        created = read_json(layout.store_file).get("created_utc")
    except (OSError, ValueError):
        created = None
    return {
        "path": str(layout.root.resolve()), "created_utc": created, "spec": store.spec.to_dict(),
        "spec_digest": store.spec.digest(),
        "latest": latest.id if latest else None,
        "counts": dict(latest.counts) if latest else {"media": 0, "ok": 0, "error": 0},
        "content_digest": latest.digest if latest else None,
        "weights": latest.metadata.get("weights") if latest else None,
        "random_init": latest.metadata.get("random_init") if latest else None,
        "snapshots": [s.as_dict() for s in snaps],
        "segments": {"count": len(seg_names), "bytes": seg_bytes},
        "runs": runs,
        "size_bytes": total, "files": files,
    }
