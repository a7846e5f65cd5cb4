"""Segment files: immutable Arrow IPC files holding the feature arrays of a set of samples.

One segment = one Arrow IPC *file* (random-access format, with footer) holding exactly one record batch:

====================  =========================================================================
column                type
====================  =========================================================================
``sha256``            ``string``: the media content hash (the key)
``feat_sha256``       ``string``: sha256 of the sample's feature bytes (C order, little-endian)
``feat``              fixed shape: ``fixed_size_list<dtype, prod(shape)>`` (one row = one sample);
                      ragged: ``list<fixed_size_list<dtype, prod(shape[1:])>>`` (one row = T_i frames,
                      the list offsets are the frame offsets)
====================  =========================================================================

A segment's file name is the sha256 of its bytes, so every segment is self-checking. Error (quarantine)
records are written to small separate Arrow files (``err-<sha256>.arrow``) in the run's staging area; they
end up as rows of the snapshot index, never in a segment.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .errors import CorruptionError
from .spec import StoreSpec

SEGMENT_FORMAT = "vlpet-feature-segment/1"
ERRORS_FORMAT = "vlpet-feature-errors/1"

ERRORS_SCHEMA = pa.schema([("sha256", pa.string()), ("media_id", pa.string()), ("rel_path", pa.string()),
                           ("kind", pa.string()), ("size", pa.int64()), ("reason", pa.string())],
                          metadata={"format": ERRORS_FORMAT})


def segment_schema(spec: StoreSpec, spec_digest: str) -> pa.Schema:
    inner = pa.list_(spec.arrow_type, spec.row_size)
    feat = pa.list_(inner) if spec.ragged else inner
    return pa.schema([("sha256", pa.string()), ("feat_sha256", pa.string()), ("feat", feat)],
                     metadata={"format": SEGMENT_FORMAT, "spec_digest": spec_digest})


def feature_hash(arr: np.ndarray) -> str:
    """sha256 of a C-contiguous little-endian array's bytes (the per-sample feature digest)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(arr)).cast("B")).hexdigest()


@dataclass(frozen=True)
class Row:
    sha256: str
    feat_sha256: str
    array: np.ndarray  # C-contiguous, spec dtype (little-endian), spec shape


def _ipc_bytes(schema: pa.Schema, batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, schema) as w:
        w.write_batch(batch)
    return sink.getvalue()


def _from_numpy(arr: np.ndarray, atype: pa.DataType) -> pa.Array:
    """A zero-copy Arrow array over a contiguous 1-d numpy array.

    Arrays are built from buffers, not with ``pa.array``, which imports pandas (~0.6 s) on first use.
    """
    arr = np.ascontiguousarray(arr)
    return pa.Array.from_buffers(atype, len(arr), [None, pa.py_buffer(arr)])


def numpy_view(arr: pa.Array, dtype) -> np.ndarray:
    """Zero-copy numpy view of a primitive Arrow array without nulls (read-only when its buffer is).

    ``Array.to_numpy`` would import pandas on first use; ``np.frombuffer`` on the data buffer does not.
    """
    if arr.null_count:
        raise CorruptionError(f"unexpected nulls in a {arr.type} array")
    dt = np.dtype(dtype)
    buf = arr.buffers()[1]
    if buf is None:
        return np.empty(0, dtype=dt)
    return np.frombuffer(buf, dtype=dt, count=len(arr), offset=arr.offset * dt.itemsize)


def arrow_array(values: Sequence, atype: pa.DataType) -> pa.Array:
    """A ``string`` or ``int64`` Arrow array from a Python sequence (``None`` = null), built from buffers."""
    n = len(values)
    mask = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    validity = None if mask.all() else pa.py_buffer(np.packbits(mask, bitorder="little"))
    nulls = int(n - mask.sum())
    if atype == pa.string():
        enc = [b"" if v is None else str(v).encode() for v in values]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.fromiter((len(e) for e in enc), dtype=np.int64, count=n), out=offsets[1:])
        return pa.Array.from_buffers(atype, n, [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(enc))],
                                     null_count=nulls)
    if atype == pa.int64():
        data = np.fromiter((0 if v is None else int(v) for v in values), dtype=np.int64, count=n)
        return pa.Array.from_buffers(atype, n, [validity, pa.py_buffer(data)], null_count=nulls)
    raise TypeError(f"arrow_array: unsupported type {atype}")


def build_segment(spec: StoreSpec, spec_digest: str, rows: Sequence[Row]) -> pa.Buffer:
    """The bytes of a segment file holding ``rows`` (in the given order)."""
    schema = segment_schema(spec, spec_digest)
    atype, k = spec.arrow_type, spec.row_size
    if rows:
        flat = np.concatenate([r.array.reshape(-1) for r in rows])
    else:
        flat = np.empty(0, dtype=spec.np_dtype)
    inner = pa.FixedSizeListArray.from_arrays(_from_numpy(flat, atype), k)
    if spec.ragged:
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum([r.array.shape[0] for r in rows], out=offsets[1:])
        feat = pa.ListArray.from_arrays(_from_numpy(offsets, pa.int32()), inner)
    else:
        feat = inner
    batch = pa.record_batch([arrow_array([r.sha256 for r in rows], pa.string()),
                             arrow_array([r.feat_sha256 for r in rows], pa.string()), feat], schema=schema)
    return _ipc_bytes(schema, batch)


def build_errors(records: Sequence[dict]) -> pa.Buffer:
    cols = {name: [r[name] for r in records] for name in ERRORS_SCHEMA.names}
    batch = pa.record_batch([arrow_array(cols[f.name], f.type) for f in ERRORS_SCHEMA], schema=ERRORS_SCHEMA)
    return _ipc_bytes(ERRORS_SCHEMA, batch)


def read_errors(path: Path) -> list[dict]:
    with pa.memory_map(str(path), "r") as src:
        table = ipc.open_file(src).read_all()
    return table.to_pylist()


def _advise(mm: mmap.mmap, advice: int | None, start: int = 0, length: int | None = None) -> None:
    """``madvise`` (the whole map by default) where the platform has it (Linux, macOS; a no-op on Windows)."""
    if advice is not None and hasattr(mm, "madvise"):
        mm.madvise(advice, start, len(mm) - start if length is None else length)


def _load_mincore():
    """libc ``mincore`` through ctypes: the standard library has no residency query, and without one every
    warm read would pay a ``MADV_WILLNEED`` (~10 us per 200 KB row measured) to help the cold ones."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).mincore
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    fn.restype = ctypes.c_int
    return fn


_MINCORE = _load_mincore() if hasattr(mmap, "MADV_WILLNEED") else None
_VEC = threading.local()


def _resident(address: int, length: int) -> bool:
    """Whether every page of the page-aligned mapped range is in memory (True when it cannot tell)."""
    pages = (length + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = getattr(_VEC, "buf", None)
    if vec is None or len(vec) < pages:
        vec = _VEC.buf = ctypes.create_string_buffer(max(pages, 64))
    if _MINCORE(address, length, vec) != 0:
        return True
    # Linux writes 1 (resident) or 0 per page; a missing page is a zero byte (a fast C search, no loop)
    return vec.raw.find(b"\0", 0, pages) < 0


def _open_random(path: Path) -> int:
    """A read-only descriptor for ``pread`` with the kernel's read-ahead off: rows are scattered, and
    read-ahead would read (and cache) bytes nobody asked for."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


# Cold rows are read by a pool of threads, one pread per row (the GIL is released while each waits), so the
# disk has up to READ_THREADS requests in flight instead of one page fault at a time. Per process.
READ_THREADS = 16
_POOL: list = [None, 0]  # (executor, pid)


def thread_pool() -> ThreadPoolExecutor:
    """This process's I/O and copy threads (parallel preads, threaded batch gathers)."""
    pid = os.getpid()
    if _POOL[0] is None or _POOL[1] != pid:  # new, or inherited by a forked child (its threads did not follow)
        _POOL[0], _POOL[1] = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="vlpet-io"), pid
    return _POOL[0]


def read_rows_parallel(jobs: Sequence[tuple[Segment, np.ndarray, np.ndarray]], out: np.ndarray) -> PendingReads:
    """Start reading ``(segment, rows, dest)`` jobs into the C-contiguous batch ``out`` (fixed shapes): rows
    in file order, adjacent rows of a segment as one ``preadv`` scattering into their batch slots (fewer,
    larger requests), the runs spread over up to ``READ_THREADS`` threads; ``wait_reads`` waits for them.
    A row asked for twice is read once and copied (by ``wait_reads``)."""
    out_bytes = out.reshape(len(out), -1).view(np.uint8)
    runs: list[tuple[Segment, int, list[int]]] = []  # (segment, first row, destinations of its rows)
    dups: list[tuple[int, int]] = []  # (destination, destination read from)
    for seg, rows, dest in jobs:
        order = np.argsort(rows, kind="stable")
        prev = None
        for r, d in zip(rows[order].tolist(), dest[order].tolist(), strict=True):
            if r == prev:
                dups.append((d, runs[-1][2][-1]))
                continue
            if prev is not None and r == prev + 1 and runs[-1][0] is seg and len(runs[-1][2]) < _RUN_MAX:
                runs[-1][2].append(d)
            else:
                runs.append((seg, r, [d]))
            prev = r
    k = min(READ_THREADS, len(runs))
    ex = thread_pool()
    return PendingReads([ex.submit(_read_runs, runs[i::k], out_bytes) for i in range(k)], out_bytes, dups)


_RUN_MAX = 8  # rows per preadv (Linux takes up to 1024 buffers; longer runs would starve the other threads)


def _read_runs(runs: list[tuple[Segment, int, list[int]]], out_bytes: np.ndarray) -> None:
    for seg, first, dests in runs:
        seg.read_run(first, [out_bytes[d] for d in dests])


@dataclass
class PendingReads:
    """Reads started by ``read_rows_parallel``, and the copies of rows asked for twice (done after them)."""

    futures: list[Future]
    out_bytes: np.ndarray
    dups: list[tuple[int, int]]  # (destination, destination it copies)


def wait_reads(pending: PendingReads) -> None:
    """Wait for every read (none may still write into the batch after this returns), then re-raise the first
    read error (``CorruptionError``, ``OSError``) in the caller, or copy the repeated rows."""
    errors = [e for e in (f.exception() for f in pending.futures) if e is not None]
    if errors:
        raise errors[0]
    for d, src in pending.dups:
        pending.out_bytes[d] = pending.out_bytes[src]


def _map_random(path: Path) -> mmap.mmap:
    """A read-only map of ``path`` marked for random access: readers touch scattered ~100 KB rows, and the
    default read-around (128 KB+ per fault) made the resident set grow ~3x faster than the bytes read."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    _advise(mm, getattr(mmap, "MADV_RANDOM", None))
    return mm


class Segment:
    """A memory-mapped, read-only view of one segment file; ``row(i)`` is a zero-copy numpy view."""

    def __init__(self, path: Path, spec: StoreSpec):
        self.path = Path(path)
        self.spec = spec
        try:
            self._mm = _map_random(self.path)
            self._fd = _open_random(self.path)
            reader = ipc.open_file(pa.py_buffer(self._mm))
            if reader.num_record_batches != 1:
                raise CorruptionError(f"segment {self.path.name}: expected 1 record batch, found "
                                      f"{reader.num_record_batches}")
            batch = reader.get_batch(0)
        except (pa.ArrowInvalid, OSError, ValueError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise CorruptionError(f"segment {self.path.name} is not a readable Arrow IPC file: {e}") from e
        self.schema = reader.schema
        self.batch = batch
        self.num_rows = batch.num_rows
        col = batch.column("feat")
        k, shape = spec.row_size, spec.row_shape
        dt = spec.np_dtype
        self._row_bytes = k * dt.itemsize  # ragged: bytes per frame
        map_address = pa.py_buffer(self._mm).address
        if spec.ragged:
            self._offsets = np.frombuffer(col.buffers()[1], dtype=np.int32, count=len(col) + 1,
                                          offset=col.offset * 4) if len(col) else np.zeros(1, np.int32)
            inner = col.values
            flat = numpy_view(inner.values, dt)
            self._frames = flat[inner.offset * k:(inner.offset + len(inner)) * k].reshape(-1, *shape)
            self._data_offset = self._frames.ctypes.data - map_address if len(self._frames) else 0
        else:
            flat = numpy_view(col.values, dt)
            n = self.num_rows
            self._data = flat[col.offset * k:(col.offset + n) * k].reshape(n, *shape)
            self._data_offset = self._data.ctypes.data - map_address if n else 0
        self._map_address = map_address

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            self._fd = None
            os.close(fd)

    @property
    def spec_digest(self) -> str:
        md = self.schema.metadata or {}
        return md.get(b"spec_digest", b"").decode()

    def hashes(self) -> list[str]:
        return self.batch.column("sha256").to_pylist()

    def feat_hashes(self) -> list[str]:
        return self.batch.column("feat_sha256").to_pylist()

    def frames(self) -> np.ndarray | None:
        """Frames per row (ragged stores) or None."""
        return np.diff(self._offsets) if self.spec.ragged else None

    @property
    def fixed_rows(self) -> np.ndarray:
        """Fixed-shape only: every row as one read-only ``(num_rows, *shape)`` view of the map."""
        return self._data

    def row(self, i: int) -> np.ndarray:
        self._request(*self._span(i))
        if self.spec.ragged:
            return self._frames[self._offsets[i]:self._offsets[i + 1]]
        return self._data[i]

    def _span(self, i: int) -> tuple[int, int]:
        """(offset in the map, bytes) of row ``i``'s features (a ragged row: all its frames)."""
        if self.spec.ragged:
            first, end = int(self._offsets[i]), int(self._offsets[i + 1])
            return self._data_offset + first * self._row_bytes, (end - first) * self._row_bytes
        return self._data_offset + i * self._row_bytes, self._row_bytes

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Fixed-shape only: a copy of the rows ``idx``."""
        out = np.empty((len(idx), *self.spec.shape), dtype=self.spec.np_dtype)
        idx = np.asarray(idx, dtype=np.int64)
        self.prefetch(idx)
        self.copy_rows(idx, out, np.arange(len(idx)))
        return out

    def prefetch(self, rows: np.ndarray) -> int:
        """Start reading the pages of those ``rows`` that are not in memory, asynchronously and all at once
        (read-ahead matched to the row: the map is ``MADV_RANDOM``, so a fault reads one page and nothing
        around it). Returns how many rows it asked for. Resident rows cost one ``mincore`` each, not a read."""
        if not len(rows) or _MINCORE is None:
            return 0
        asked = 0
        for r in np.unique(rows).tolist():  # sorted: the kernel sees the requests in file order
            asked += self._request(*self._span(r))
        return asked

    def _request(self, start: int, size: int) -> bool:
        """``MADV_WILLNEED`` on the map's bytes ``[start, start + size)`` unless all are resident: one request
        for the whole row, where touching it would fault its pages in one at a time. Whether it asked."""
        if size == 0 or _MINCORE is None:
            return False
        aligned = start - start % mmap.PAGESIZE
        length = start + size - aligned
        if _resident(self._map_address + aligned, length):
            return False
        _advise(self._mm, mmap.MADV_WILLNEED, aligned, length)
        return True

    def cold(self, rows: np.ndarray) -> np.ndarray:
        """Fixed-shape only: which of ``rows`` are not wholly in memory (all False when it cannot tell)."""
        if _MINCORE is None:
            return np.zeros(len(rows), dtype=bool)
        page, rb, base = mmap.PAGESIZE, self._row_bytes, self._map_address + self._data_offset
        out = np.empty(len(rows), dtype=bool)
        for j, r in enumerate(rows.tolist()):
            start = base + r * rb
            aligned = start - start % page
            out[j] = not _resident(aligned, start + rb - aligned)
        return out

    def read_run(self, first: int, bufs: list[np.ndarray]) -> None:
        """Fixed-shape only: rows ``first, first + 1, ...`` (one per buffer of ``row_bytes``) with one
        ``preadv`` (more only after a short read)."""
        rb = self._row_bytes
        pos, want, done = self._data_offset + first * rb, rb * len(bufs), 0
        while done < want:
            j, within = divmod(done, rb)
            got = os.preadv(self._fd, [bufs[j][within:], *bufs[j + 1:]], pos + done)
            if got <= 0:
                raise CorruptionError(f"segment {self.path.name}: short read at byte {pos + done} (rows "
                                      f"{first}-{first + len(bufs) - 1}; the file is shorter than its index says)")
            done += got

    def copy_rows(self, rows: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
        """Fixed-shape only: ``out[dest[j]] = row(rows[j])`` in file order; call ``prefetch(rows)`` first.

        One memcpy per row straight from the map into ``out`` (no temporary as fancy indexing would make)."""
        data = self._data
        rows_l, dest_l = rows.tolist(), dest.tolist()  # Python ints index numpy faster than numpy scalars
        for j in np.argsort(rows, kind="stable").tolist():
            out[dest_l[j]] = data[rows_l[j]]
