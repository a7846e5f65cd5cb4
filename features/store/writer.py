"""Runs and shard writers: the staging side of the store.

A *run* is the staging area of one commit: ``runs/<run_id>/``. Its id is derived from the store spec, the
parent snapshot and the weights identity given to ``plan`` (not from a clock), so a re-run after a crash
finds the same staging area and resumes it. A run has any number of *shards*, each written by one
``ShardWriter`` at a time, in any process or machine that shares the filesystem. A shard writer buffers
samples and flushes them as complete, content-addressed segment files (``seg-<sha256>.arrow``, written to a
temporary name, fsync'ed, renamed): a killed writer loses at most its unflushed buffer, and a re-run skips
every hash in a finished file (``done_hashes``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..media import MediaItem
from .errors import StoreError
from .layout import (
    ARROW,
    ERR_PREFIX,
    RUN_FILE,
    SEG_PREFIX,
    TMP_PREFIX,
    Layout,
    check_id,
    fsync_dir,
    write_tmp,
)
from .segment import Row, Segment, build_errors, build_segment, feature_hash, read_errors
from .spec import StoreSpec

DEFAULT_FLUSH_ROWS = 256
DEFAULT_FLUSH_BYTES = 64 << 20
MAX_REASON = 4000


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, other user
        return True
    return True


def staged_files(shard_dir: Path) -> tuple[list[Path], list[Path]]:
    """(segment files, error files) finished in a shard directory, sorted by name."""
    try:
        names = sorted(os.listdir(shard_dir))
    except FileNotFoundError:
        return [], []
    segs = [shard_dir / n for n in names if n.startswith(SEG_PREFIX) and n.endswith(ARROW)]
    errs = [shard_dir / n for n in names if n.startswith(ERR_PREFIX) and n.endswith(ARROW)]
    return segs, errs


def staged_name_sha(path: Path) -> str:
    name = path.name
    for prefix in (SEG_PREFIX, ERR_PREFIX):
        if name.startswith(prefix):
            return name[len(prefix): -len(ARROW)]
    raise ValueError(name)


class Run:
    """A run's staging area. Picklable (paths and ids only): send it to shard processes."""

    def __init__(self, root: str | os.PathLike, run_id: str, parent: str | None, spec: StoreSpec,
                 plan: Any = None):
        self.root = Path(root)
        self.run_id = check_id("run id", run_id)
        self.parent = parent
        self.spec = spec
        self.plan = plan
        self._layout = Layout(self.root)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["plan"] = None  # can be big; shard processes do not need it
        return state

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, parent={self.parent!r}, root={str(self.root)!r})"

    @property
    def path(self) -> Path:
        return self._layout.run_dir(self.run_id)

    def shard_writer(self, shard_id: str = "0", *, flush_rows: int = DEFAULT_FLUSH_ROWS,
                     flush_bytes: int = DEFAULT_FLUSH_BYTES) -> ShardWriter:
        return ShardWriter(self, shard_id, flush_rows=flush_rows, flush_bytes=flush_bytes)

    def shard_ids(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.path / "shards") if not n.startswith("."))
        except FileNotFoundError:
            return []

    def done_hashes(self) -> frozenset[str]:
        """Every hash in a finished file of any shard of this run (ok or quarantined)."""
        out: set[str] = set()
        for sid in self.shard_ids():
            out |= _read_done(self._layout.shard_dir(self.run_id, sid), self.spec)
        return frozenset(out)

    def exists(self) -> bool:
        return (self.path / RUN_FILE).exists()

    def discard(self) -> None:
        """Delete this run's staging area (its finished segments are lost)."""
        shutil.rmtree(self.path, ignore_errors=True)


def _read_done(shard_dir: Path, spec: StoreSpec) -> set[str]:
    done: set[str] = set()
    segs, errs = staged_files(shard_dir)
    for p in segs:
        done.update(Segment(p, spec).hashes())
    for p in errs:
        done.update(r["sha256"] for r in read_errors(p))
    return done


class ShardWriter:
    """Writes one shard of a run. ``add``/``add_error`` buffer; every ``flush_rows`` samples or
    ``flush_bytes`` bytes a complete segment file is published atomically in the shard's directory.

    One writer per shard at a time (a new writer deletes the shard's leftover temporary files of dead
    processes). Use as a context manager or call ``close()``: the buffer is flushed on exit, also on an
    exception (buffered samples are complete, so keeping them is safe).
    """

    def __init__(self, run: Run, shard_id: str, *, flush_rows: int = DEFAULT_FLUSH_ROWS,
                 flush_bytes: int = DEFAULT_FLUSH_BYTES):
        if flush_rows < 1 or flush_bytes < 1:
            raise ValueError("flush_rows and flush_bytes must be >= 1")
        self.run = run
        self.spec = run.spec
        self.shard_id = check_id("shard id", str(shard_id))
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        if not run.exists():
            raise StoreError(f"run {run.run_id!r} has no staging area at {run.path} (committed or discarded?)")
        self.dir = Layout(run.root).shard_dir(run.run_id, self.shard_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._spec_digest = self.spec.digest()
        self._dtype = self.spec.np_dtype
        self._clean_tmp()
        self._done: set[str] = _read_done(self.dir, self.spec)
        self._rows: list[Row] = []
        self._errors: list[dict] = []
        self._pending: set[str] = set()
        self._bytes = 0
        self._closed = False
        self.n_added = 0
        self.n_errors = 0
        self.n_segments = 0

    def _clean_tmp(self) -> None:
        for name in os.listdir(self.dir):
            if not name.startswith(TMP_PREFIX):
                continue
            try:
                pid = int(name[len(TMP_PREFIX):].split("-", 1)[0])
            except ValueError:
                pid = -1
            if pid != os.getpid() and (pid < 0 or not _pid_alive(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir / name)

    # --- API ---------------------------------------------------------------------------------------------
    def done_hashes(self) -> frozenset[str]:
        """Hashes in this shard's finished files (written before a crash, or flushed by this writer)."""
        return frozenset(self._done)

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._done or sha256 in self._pending

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"shard writer {self.shard_id!r} is closed")

    def _coerce(self, item: MediaItem, array: Any) -> np.ndarray:
        if hasattr(array, "detach") and hasattr(array, "cpu"):  # a torch tensor (torch is not imported here)
            array = array.detach().cpu()
            if str(array.dtype) == "torch.bfloat16":
                array = array.float()
            array = array.numpy()
        arr = np.asarray(array)
        spec = self.spec
        if spec.ragged:
            ok_shape = arr.ndim == len(spec.shape) and tuple(arr.shape[1:]) == spec.row_shape
        else:
            ok_shape = tuple(arr.shape) == spec.shape
        if not ok_shape:
            raise ValueError(f"{item.media_id}: feature shape {tuple(arr.shape)} does not match the store's "
                             f"{spec.shape}")
        if arr.dtype != self._dtype:
            if not np.can_cast(arr.dtype, self._dtype, casting="same_kind"):
                raise TypeError(f"{item.media_id}: cannot store a {arr.dtype} array in a {spec.dtype} store")
            arr = arr.astype(self._dtype)
        return np.ascontiguousarray(arr)

    def add(self, item: MediaItem, array: Any) -> bool:
        """Buffer the features of ``item``; False (and nothing done) when its hash is already written/buffered."""
        self._check_open()
        if item.sha256 in self:
            return False
        arr = self._coerce(item, array)
        self._rows.append(Row(item.sha256, feature_hash(arr), arr))
        self._pending.add(item.sha256)
        self._bytes += arr.nbytes
        self.n_added += 1
        self._maybe_flush()
        return True

    def add_error(self, item: MediaItem, reason: str) -> bool:
        """Quarantine ``item``: its extraction failed for ``reason`` (recorded with its path and hash)."""
        self._check_open()
        if item.sha256 in self:
            return False
        reason = str(reason)[:MAX_REASON] or "unknown error"
        self._errors.append({"sha256": item.sha256, "media_id": item.media_id, "rel_path": item.rel_path,
                             "kind": item.kind, "size": int(item.size), "reason": reason})
        self._pending.add(item.sha256)
        self._bytes += len(reason) + 256
        self.n_errors += 1
        self._maybe_flush()
        return True

    def _maybe_flush(self) -> None:
        if len(self._rows) + len(self._errors) >= self.flush_rows or self._bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Publish the buffer as complete files (segment, then quarantine records); each is atomic."""
        if self._rows:
            buf = build_segment(self.spec, self._spec_digest, self._rows)
            self._publish(SEG_PREFIX, buf)
            self.n_segments += 1
            self._done.update(r.sha256 for r in self._rows)
        if self._errors:
            buf = build_errors(self._errors)
            self._publish(ERR_PREFIX, buf)
            self._done.update(r["sha256"] for r in self._errors)
        self._rows, self._errors, self._pending, self._bytes = [], [], set(), 0

    def _publish(self, prefix: str, buf) -> None:
        sha = hashlib.sha256(memoryview(buf)).hexdigest()
        tmp = write_tmp(self.dir, buf)
        os.replace(tmp, self.dir / f"{prefix}{sha}{ARROW}")
        fsync_dir(self.dir)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
