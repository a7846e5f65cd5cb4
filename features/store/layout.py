"""Paths of a store on disk and the atomic-file primitives every writer uses.

Everything is written as ``<dir>/.tmp-<unique>`` first, fsync'ed, then renamed into place (``os.replace`` or
``os.link`` for create-if-absent), and the directory is fsync'ed: a name that exists is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT = "vlpet-feature-store/1"
STORE_FILE = "STORE.json"
SEGMENTS = "segments"
SNAPSHOTS = "snapshots"
RUNS = "runs"
LOCK_FILE = "LOCK"
WRITER_LOCK_FILE = "WRITER"
MANIFEST = "manifest.json"
INDEX = "index.arrow"
RUN_FILE = "RUN.json"
TMP_PREFIX = ".tmp-"
SEG_PREFIX = "seg-"
ERR_PREFIX = "err-"
ARROW = ".arrow"

_SNAP_RE = re.compile(r"^(\d{6})-([0-9a-f]{12})$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_snapshot_name(name: str) -> bool:
    return bool(_SNAP_RE.match(name))


def is_sha(name: str) -> bool:
    return bool(_SHA_RE.match(name))


def check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ValueError(f"{kind} {value!r} must match {_ID_RE.pattern} (letters, digits, '.', '_', '-')")
    return value


class Layout:
    """The paths of one store::

        <root>/STORE.json                         format, spec, spec digest (written once)
        <root>/LOCK                               flock'ed by commit and gc
        <root>/WRITER                             flock'ed by a writer for its whole run (who holds it inside)
        <root>/segments/<sha256>.arrow            immutable committed segments, named by the sha256 of their bytes
        <root>/snapshots/<seq>-<digest12>/        one immutable snapshot: manifest.json + index.arrow
        <root>/runs/<run_id>/RUN.json             a run's staging area: parent snapshot, plan summary
        <root>/runs/<run_id>/shards/<shard>/seg-<sha256>.arrow   finished segments of a shard
        <root>/runs/<run_id>/shards/<shard>/err-<sha256>.arrow   finished quarantine records of a shard
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def store_file(self) -> Path:
        return self.root / STORE_FILE

    @property
    def segments(self) -> Path:
        return self.root / SEGMENTS

    @property
    def snapshots(self) -> Path:
        return self.root / SNAPSHOTS

    @property
    def runs(self) -> Path:
        return self.root / RUNS

    def segment(self, sha: str) -> Path:
        return self.segments / f"{sha}{ARROW}"

    def snapshot_dir(self, snap_id: str) -> Path:
        return self.snapshots / snap_id

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def shard_dir(self, run_id: str, shard_id: str) -> Path:
        return self.runs / run_id / "shards" / shard_id

    def snapshot_ids(self) -> list[str]:
        """Committed snapshot ids, oldest first (a snapshot directory exists only once complete)."""
        try:
            names = os.listdir(self.snapshots)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if is_snapshot_name(n))

    def segment_names(self) -> list[str]:
        try:
            names = os.listdir(self.segments)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(ARROW)] for n in names if n.endswith(ARROW) and is_sha(n[: -len(ARROW)]))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive advisory lock (flock) on ``<root>/LOCK``: serialises commit and gc across processes."""
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def writer_lock(self, *, wait: bool = True, on_wait: Any = None) -> Iterator[None]:
        """One writer per store: an exclusive flock on ``<root>/WRITER`` held for a whole run (plan, extract,
        commit). Busy: ``wait=False`` raises ``StoreBusyError`` naming the holder; otherwise ``on_wait(holder)``
        is called once and the call blocks until the holder ends (the kernel drops the lock of a dead process)."""
        from .errors import StoreBusyError

        fd = os.open(self.root / WRITER_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        held = False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
                if not wait:
                    raise StoreBusyError(f"another writer holds the store {self.root} ({holder}); wait for it to "
                                         f"finish, or run again without --no-wait to queue behind it") from None
                if on_wait is not None:
                    on_wait(holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
            os.ftruncate(fd, 0)
            import platform
            from datetime import datetime, timezone

            since = datetime.now(timezone.utc).isoformat(timespec="seconds")
            os.pwrite(fd, f"pid {os.getpid()} on {platform.node()} since {since}".encode(), 0)
            yield
        finally:
            if held:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


# --- atomic primitives ---------------------------------------------------------------------------------------

def tmp_name(directory: Path, suffix: str = "") -> Path:
    return directory / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{suffix}"


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_tmp(directory: Path, data: bytes | memoryview, suffix: str = "", mode: int = 0o444) -> Path:
    """Write ``data`` to a fresh temporary file in ``directory``, fsync it, and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(directory, suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    return tmp


def create_exclusive(path: Path, data: bytes, mode: int = 0o444) -> bool:
    """Create ``path`` with ``data`` unless it exists (atomic); True when this call created it."""
    tmp = write_tmp(path.parent, data, mode=mode)
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return created


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a complete copy of immutable ``src`` (hard link when possible); no-op when ``dst`` exists."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        return
    except OSError:
        pass
    tmp = tmp_name(dst.parent)
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o444)
    os.replace(tmp, dst)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dump_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def dir_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``, hard links counted once."""
    seen: set[tuple[int, int]] = set()
    total = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
            files += 1
    return total, files
