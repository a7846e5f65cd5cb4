"""``SnapshotReader``: read-only, memory-mapped, zero-copy access to one committed snapshot.

Lookups are O(1) (dicts built once per process from the snapshot index). Segment files are mapped lazily,
on first use, and the maps are per process: after a ``fork`` (DataLoader workers) the reader sees the pid
change and reopens its maps in the child; pickling (``spawn``) carries only the store path and snapshot id.

Readers verify what they hand out: a segment's bytes are hashed against its name (its sha256, which the
snapshot manifest records) when the segment is first mapped in a process, so a flipped or truncated byte
stops the caller with a ``CorruptionError`` naming the segment instead of feeding wrong features to training.
One sha256 pass over each segment per process (the pages it reads are the ones training reads next).
``verify=False`` (or ``VERIFY_ON_MAP = False``) skips it, for measuring what it costs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CorruptionError, QuarantinedError, StoreError
from .layout import INDEX, Layout
from .segment import Segment, numpy_view, read_rows_parallel, thread_pool, wait_reads
from .snapshot import OK, QuarantineRecord, SnapshotInfo, read_index_table
from .spec import StoreSpec

VERIFY_ON_MAP = True  # the default of SnapshotReader(verify=...)
_VERIFIED: set[tuple[str, int, int, int, int]] = set()  # (path, dev, inode, size, mtime_ns) checked in this process
_VERIFIED_LOCK = threading.Lock()


def check_segment_file(path: Path, expected_sha: str, expected_bytes: int | None, snapshot_id: str,
                       root: Path) -> None:
    """Hash a committed segment file once per process and compare it with the sha256 (and size) the snapshot
    records; ``CorruptionError`` naming the segment and the way out when they differ."""
    st = path.stat()  # FileNotFoundError: the caller reports a missing segment
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    fix = (f"run `vlpet store verify {root}` to list every damaged segment, then restore the store from a "
           f"backup or extract again into a new store (`vlpet extract --media ... --store NEW`)")
    if expected_bytes is not None and st.st_size != expected_bytes:
        raise CorruptionError(f"segment {path.name} of snapshot {snapshot_id} in {root} has {st.st_size} bytes, "
                              f"the snapshot recorded {expected_bytes} (truncated or overwritten); {fix}")
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    if h.hexdigest() != expected_sha:
        raise CorruptionError(f"segment {path.name} of snapshot {snapshot_id} in {root} does not match its "
                              f"checksum (sha256 {h.hexdigest()}, recorded {expected_sha}): its bytes are "
                              f"corrupt; {fix}")
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)


@dataclass(frozen=True)
class SampleStatus:
    media_id: str
    rel_path: str
    sha256: str
    kind: str
    size: int
    status: str  # "ok" | "error"
    reason: str | None
    frames: int | None  # ragged stores: T_i for ok samples

    @property
    def ok(self) -> bool:
        return self.status == OK


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


GATHER_THREADS = min(4, _usable_cpus()) if getattr(sys, "_is_gil_enabled", lambda: True)() else 1
"""Threads a batch gather of rows already in memory copies with (the caller's included). Each row is one
memory-bound memcpy during which numpy releases the GIL: on 2 cores two threads copy random 200 KB rows ~1.6x
faster than one, and a warm pass of bench/loader.py runs 1.16-1.33x faster (session 20). Loader workers pass
``threads=1``: the worker processes use the cores."""
GATHER_MIN_BYTES_PER_THREAD = 2 << 20  # handing a part to a thread costs tens of us: worth it for MBs only


def _copy_rows(views: dict[int, np.ndarray], segs: list[int], rows: list[int], out: np.ndarray,
               claims: Iterator[int]) -> None:
    """``out[d] = views[segs[d]][rows[d]]`` for each position ``d`` this thread takes from ``claims``.

    The threads of one gather share one ``iter(range(n))``: each takes the next row when it is free, so a thread
    that gets less CPU (another process, or torch's OpenMP threads still spinning after an operation, on its
    core) copies fewer rows instead of holding up the batch. Fixed halves lost ~15 % on the text + collate path
    for that reason, and a lock around the counter cost ~20 % (bench/loader.py, session 20). ``next`` on a
    range iterator is atomic under the GIL; ``GATHER_THREADS`` is 1 where there is none."""
    for d in claims:
        out[d] = views[segs[d]][rows[d]]


class SnapshotReader:
    """Features of one committed snapshot. Arrays returned by ``get`` are read-only views into the mapped
    segment files (no copy); ``get_many`` stacks fixed-shape samples into one new array, and returns a list
    of views for ragged ones."""

    def __init__(self, root: str | os.PathLike, spec: StoreSpec, info: SnapshotInfo, *, verify: bool | None = None):
        self.root = Path(root)
        self.spec = spec
        self.snapshot = info
        self.verify = VERIFY_ON_MAP if verify is None else verify
        self._index_loaded = False
        self._maps_pid: int | None = None
        self._segments: list[Segment | None] = []
        self._lock = threading.Lock()
        self._warm_streak = self._batches = 0

    # --- pickling / fork -----------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"root": self.root, "spec": self.spec, "snapshot": self.snapshot, "verify": self.verify}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["spec"], state["snapshot"], verify=state.get("verify"))

    def _load_index(self) -> None:
        table = read_index_table(self.snapshot.path / INDEX)
        ids = table.column("media_id").to_pylist()
        shas = table.column("sha256").to_pylist()
        status = table.column("status").to_pylist()
        segs = table.column("segment").to_pylist()
        self._ids, self._shas, self._status = ids, shas, status
        self._rel = table.column("rel_path").to_pylist()
        self._kind = table.column("kind").to_pylist()
        self._size = np.array(numpy_view(table.column("size").combine_chunks(), np.int64))
        self._reason = table.column("reason").to_pylist()
        self._frames = np.array(numpy_view(table.column("frames").combine_chunks(), np.int64))
        self._row = np.array(numpy_view(table.column("row").combine_chunks(), np.int64))
        self._by_id = {m: i for i, m in enumerate(ids)}
        self._by_sha: dict[str, int] = {}
        for i, (h, st) in enumerate(zip(shas, status, strict=True)):
            j = self._by_sha.get(h)
            if j is None or (st == OK and status[j] != OK):
                self._by_sha[h] = i
        self._seg_names = sorted({s for s in segs if s is not None})
        pos = {s: k for k, s in enumerate(self._seg_names)}
        self._seg = np.array([pos[s] if s is not None else -1 for s in segs], dtype=np.int64)
        self._ok = np.array([st == OK for st in status], dtype=bool)
        self._ok_ids = [m for m, st in zip(ids, status, strict=True) if st == OK]
        self._index_loaded = True

    def _ensure(self) -> None:
        if not self._index_loaded:
            with self._lock:
                if not self._index_loaded:
                    self._load_index()
        pid = os.getpid()
        if self._maps_pid != pid:  # first use, or we are a forked child: drop inherited maps, map again lazily
            self._lock = threading.Lock()
            self._segments = [None] * len(self._seg_names)
            self._maps_pid = pid

    def _segment(self, k: int) -> Segment:
        seg = self._segments[k]
        if seg is None:
            with self._lock:
                seg = self._segments[k]
                if seg is None:
                    name = self._seg_names[k]
                    path = Layout(self.root).segment(name)
                    try:
                        if self.verify:
                            rec = self.snapshot.segments.get(name) or {}
                            check_segment_file(path, rec.get("sha256", name), rec.get("bytes"), self.snapshot.id,
                                               self.root)
                        seg = Segment(path, self.spec)
                    except FileNotFoundError as e:
                        raise StoreError(f"segment {name} of snapshot {self.snapshot.id} is missing from "
                                         f"{path.parent} (garbage-collected or deleted?)") from e
                    self._segments[k] = seg
        return seg

    def check_segments(self, media_ids: Iterable[str] | None = None) -> int:
        """Map (and so verify, see the module docstring) every segment holding the features of ``media_ids``
        (default: every usable sample); returns how many. Task-table builds call it so a corrupt store stops
        the build, not a training run hours later."""
        self._ensure()
        if media_ids is None:
            ks = {int(k) for k in self._seg if k >= 0}
        else:
            ks = {int(self._seg[i]) for i in (self._by_id[m] for m in media_ids if m in self._by_id)
                  if self._seg[i] >= 0}
        for k in sorted(ks):
            self._segment(k)
        return len(ks)

    def close(self) -> None:
        """Drop the maps (views already handed out stay valid: they keep their buffers alive)."""
        self._segments = [None] * len(self._segments)
        self._maps_pid = None

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- lookups -------------------------------------------------------------------------------------------
    def _pos(self, media_id: str) -> int:
        self._ensure()
        try:
            return self._by_id[media_id]
        except KeyError:
            raise KeyError(f"media id {media_id!r} is not in snapshot {self.snapshot.id}") from None

    def _pos_sha(self, sha256: str) -> int:
        self._ensure()
        try:
            return self._by_sha[sha256]
        except KeyError:
            raise KeyError(f"media hash {sha256!r} is not in snapshot {self.snapshot.id}") from None

    def _view(self, i: int) -> np.ndarray:
        if self._status[i] != OK:
            raise QuarantinedError(self._ids[i], self._reason[i] or "")
        return self._segment(int(self._seg[i])).row(int(self._row[i]))

    def get(self, media_id: str) -> np.ndarray:
        """The features of ``media_id``: a read-only zero-copy view, ``spec.shape`` (ragged: ``(T_i, ...)``)."""
        return self._view(self._pos(media_id))

    __getitem__ = get

    def get_by_hash(self, sha256: str) -> np.ndarray:
        return self._view(self._pos_sha(sha256))

    def get_many(self, media_ids: Sequence[str], out: np.ndarray | None = None) -> np.ndarray | list[np.ndarray]:
        """Fixed shape: one new ``(n, *shape)`` array (or filled into ``out``); ragged: a list of views."""
        self._ensure()
        by_id = self._by_id
        try:
            pos = [by_id[m] for m in media_ids]
        except KeyError:
            pos = [self._pos(m) for m in media_ids]  # raises the KeyError naming the missing id
        return self._many(pos, out)

    def get_many_by_hash(self, hashes: Sequence[str], out: np.ndarray | None = None):
        return self._many([self._pos_sha(h) for h in hashes], out)

    def positions(self, media_ids: Sequence[str]) -> np.ndarray:
        """Index positions of ``media_ids`` (-1 where unknown): callers that read the same ids many times
        (a task table's rows) look them up once and read with ``get_many_at`` / ``get_at``."""
        self._ensure()
        get = self._by_id.get
        return np.fromiter((get(m, -1) for m in media_ids), dtype=np.int64, count=len(media_ids))

    def media_id_at(self, pos: int) -> str:
        self._ensure()
        return self._ids[pos]

    def get_at(self, pos: int) -> np.ndarray:
        """``get`` by index position (from ``positions``): a read-only zero-copy view."""
        self._ensure()
        return self._view(int(pos))

    def get_many_at(self, pos: np.ndarray | Sequence[int], out: np.ndarray | None = None, *,
                    threads: int | None = None):
        """``get_many`` by index positions (from ``positions``, all >= 0). ``threads``: how many threads copy
        rows already in memory (default ``GATHER_THREADS``; a DataLoader worker passes 1)."""
        self._ensure()
        return self._many(pos, out, threads)

    def prefetch(self, media_ids: Sequence[str]) -> int:
        """Start reading the features of ``media_ids`` that are not in memory yet, without waiting (a loader
        calls it with the next batch while it serves this one: the disk sees many requests at once instead
        of one fault at a time). Unknown or quarantined ids are skipped. Returns the rows it asked for."""
        return self.prefetch_at(self.positions(list(media_ids)))

    def prefetch_at(self, pos: np.ndarray) -> int:
        """``prefetch`` by index positions; negative (unknown) and quarantined ones are skipped."""
        self._ensure()
        p = np.asarray(pos, dtype=np.int64)
        p = p[p >= 0]
        p = p[self._ok[p]]
        if not len(p):
            return 0
        segs, rows = self._seg[p], self._row[p]
        return sum(self._segment(int(k)).prefetch(rows[segs == k]) for k in np.unique(segs))

    def _many(self, pos, out: np.ndarray | None, threads: int | None = None):
        if self.spec.ragged:
            return [self._view(int(i)) for i in pos]
        n = len(pos)
        if out is None:
            out = np.empty((n, *self.spec.shape), dtype=self.spec.np_dtype)
        elif out.shape != (n, *self.spec.shape):
            raise ValueError(f"out has shape {out.shape}, expected {(n, *self.spec.shape)}")
        if n == 0:
            return out
        p = np.asarray(pos, dtype=np.int64)
        bad = np.flatnonzero(~self._ok[p])
        if bad.size:
            i = int(p[bad[0]])
            raise QuarantinedError(self._ids[i], self._reason[i] or "")
        segs = self._seg[p]
        rows = self._row[p]
        if self._should_check_residency() and out.flags.c_contiguous and out.flags.writeable:
            if len(self._seg_names) == 1 or (segs == segs[0]).all():
                parts = [(self._segment(int(segs[0])), np.arange(n))]
            else:
                parts = [(self._segment(int(k)), np.flatnonzero(segs == k)) for k in np.unique(segs)]
            # rows not in memory are read with parallel preads straight into `out` (many requests in flight,
            # no page faults); the resident ones are copied from the maps meanwhile
            cold = [(seg, sel, seg.cold(rows[sel])) for seg, sel in parts]
            jobs = [(seg, rows[sel][c], sel[c]) for seg, sel, c in cold if c.any()]
            self._warm_streak = 0 if jobs else self._warm_streak + 1
            if jobs:
                pending = read_rows_parallel(jobs, out)
                for seg, sel, c in cold:
                    if not c.all():
                        seg.copy_rows(rows[sel][~c], out, sel[~c])
                wait_reads(pending)
                return out
        self._copy_from_maps(segs, rows, out, GATHER_THREADS if threads is None else threads)
        return out

    def _copy_from_maps(self, segs: np.ndarray, rows: np.ndarray, out: np.ndarray, threads: int) -> None:
        """``out[j] = row rows[j] of segment segs[j]``: one memcpy per row from the maps, in batch order (copying
        in file order instead, after a sort, bought nothing once the rows are in memory: bench/loader.py,
        session 19), split over up to ``threads`` threads, this one included."""
        segs_l, rows_l = segs.tolist(), rows.tolist()
        views = {k: self._segment(k).fixed_rows for k in set(segs_l)}  # mapped (and verified) on this thread
        n = len(rows_l)
        k = max(1, min(threads, n, out.nbytes // GATHER_MIN_BYTES_PER_THREAD))
        todo = iter(range(n))
        futures = [thread_pool().submit(_copy_rows, views, segs_l, rows_l, out, todo) for _ in range(k - 1)]
        try:
            _copy_rows(views, segs_l, rows_l, out, todo)
        finally:
            errors = [f.exception() for f in futures]  # waits for every part: none writes into out afterwards
        for e in errors:
            if e is not None:
                raise e

    def _should_check_residency(self) -> bool:
        """Residency checks cost a ``mincore`` per row: once 8 batches in a row found everything in memory
        (a store that fits in the page cache), check every 16th batch only; any cold row resets this."""
        self._batches += 1
        return self._warm_streak < 8 or self._batches % 16 == 0

    # --- index views ---------------------------------------------------------------------------------------
    def status(self, media_id: str) -> SampleStatus:
        i = self._pos(media_id)
        frames = int(self._frames[i]) if self._frames[i] >= 0 else None
        return SampleStatus(self._ids[i], self._rel[i], self._shas[i], self._kind[i], int(self._size[i]),
                            self._status[i], self._reason[i], frames)

    def errors(self) -> list[QuarantineRecord]:
        """The quarantine records of this snapshot: media id, relative path, content hash, reason."""
        self._ensure()
        return [QuarantineRecord(self._ids[i], self._rel[i], self._shas[i], self._reason[i] or "")
                for i, st in enumerate(self._status) if st != OK]

    @property
    def media_ids(self) -> list[str]:
        """Media ids with usable features (status ok), sorted. ``all_media_ids`` adds the quarantined ones."""
        self._ensure()
        return list(self._ok_ids)

    @property
    def all_media_ids(self) -> list[str]:
        self._ensure()
        return list(self._ids)

    def hashes(self) -> dict[str, str]:
        """media id -> content hash, for every media item of the snapshot."""
        self._ensure()
        return dict(zip(self._ids, self._shas, strict=True))

    def __len__(self) -> int:
        self._ensure()
        return len(self._ok_ids)

    def __contains__(self, media_id: object) -> bool:
        self._ensure()
        i = self._by_id.get(media_id)  # type: ignore[arg-type]
        return i is not None and self._status[i] == OK

    def __iter__(self) -> Iterable[str]:
        return iter(self.media_ids)

    @property
    def snapshot_id(self) -> str:
        return self.snapshot.id

    def content_digest(self) -> str:
        return self.snapshot.content_digest()

    def __repr__(self) -> str:
        return f"SnapshotReader({str(self.root)!r}, snapshot={self.snapshot.id!r}, extractor={self.spec.extractor!r})"
