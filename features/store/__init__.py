"""The feature store: one store per extractor spec, immutable Arrow IPC segments, committed snapshots.

Design
======
Features live in **immutable, content-addressed Arrow IPC files ("segments")**, and every committed
**snapshot** is a small JSON manifest plus an Arrow index over them. Zarr v3 was measured against this in
``bench/store.py`` (see also docs/operations.md, "Library behaviour worth knowing") and not chosen as the
primary layout:

* reads: the training loader does random single-sample and 256-sample reads. A memory-mapped IPC file
  serves a sample as a zero-copy, read-only numpy view (no decode, no allocation); Zarr decodes a chunk
  into a fresh array per read, was ~3x slower per row, and its sharded layout (needed to avoid one file per
  sample) made fancy-index batch reads ~10x slower;
* crash safety and incrementality want *immutable* files: a segment is written to a temporary name,
  fsync'ed and renamed, so it either exists complete or not at all, and it is named by the sha256 of its
  bytes, so it checks itself (``verify``) and publishing it twice is idempotent. Zarr arrays are mutable
  in place (a killed write leaves a half-updated chunk), and growing them incrementally or merging shards
  from many writers means resizing and rewriting shared metadata;
* ragged videos map directly to an Arrow ``list<fixed_size_list<dtype, D>>`` column: the list offsets are
  the frame offsets and a video reads back zero-copy as ``(T_i, D)``;
* one dependency fewer on the read path (pyarrow only); Zarr is the export format
  (``zarr_view.export_zarr`` / ``vlpet store export --format zarr``, docs/zarr.md) for Dask/xarray and object
  storage, and ``import_zarr`` reads an export back bit-identically.

Measured by ``bench/store.py`` (2000 x (49, 2048) float16 = 401 MB, warm page cache, 2 cores; one run,
run-to-run noise on this shared machine is up to ~2x): write (full plan/stage/commit path, with sha256 of
every sample and segment) 1.96 s vs Zarr 2.96 s (one chunk per sample) / 2.21 s (sharded); random single
row 2.2 us as a zero-copy view, 14 us copied out, vs Zarr 932 us / 1535 us; 256-row batch 14 ms vs Zarr
279 ms / 962 ms; open + first read 2.1 ms vs 2.2 / 3.0 ms; 12 files vs 2002 / 10; 402 MB vs 369 MB (Zarr's
default zstd saves 8% on fp16 features; Arrow segments are stored uncompressed so they can be mapped).

Layout on disk
==============
::

    <store>/STORE.json                        format, extractor spec, spec digest (written once, atomically)
    <store>/LOCK                              flock'ed by commit and gc
    <store>/segments/<sha256>.arrow           committed segments (immutable, read-only, named by their sha256)
    <store>/snapshots/<seq:06d>-<digest12>/   one committed snapshot (immutable):
        manifest.json                         parent, run id, counts, content digest, index checksum,
                                              referenced segments (sha256, bytes, rows), metadata
                                              (weights identity, random_init, device ...), library versions
        index.arrow                           per media item: media_id, rel_path, sha256, kind, size,
                                              status ok|error, reason, segment, row, frames, feat_sha256
    <store>/runs/<run_id>/RUN.json            a run's staging area (parent snapshot, plan summary)
    <store>/runs/<run_id>/shards/<shard>/seg-<sha256>.arrow   finished segments of a shard
    <store>/runs/<run_id>/shards/<shard>/err-<sha256>.arrow   finished quarantine records of a shard

A segment is one Arrow IPC file with one record batch: ``sha256`` (media content hash), ``feat_sha256``
(sha256 of the sample's feature bytes) and ``feat`` (``fixed_size_list<dtype, prod(shape)>``; ragged:
``list<fixed_size_list<dtype, prod(shape[1:])>>``).

Guarantees
==========
* **Commit point**: the atomic rename of a fully written snapshot directory; ``latest`` is the snapshot
  with the highest sequence number. Readers only ever open committed snapshots, so no partial sample
  (nor any uncommitted one) is ever visible.
* **Crash safety**: kill -9 at any moment and re-run: the run id is derived from (spec, parent snapshot,
  weights identity), so the re-run resumes the same staging area, skips every hash in a finished segment
  (``ShardWriter.done_hashes``) and commits a snapshot with the same content digest as an uninterrupted
  run. Each commit step is idempotent (segments are hard-linked into ``segments/`` by content name).
* **Content digest** (``SnapshotInfo.content_digest()``): sha256 over the spec digest and, in media-id
  order, every index row's ``[media_id, rel_path, sha256, kind, size, status, reason, shape, feat_sha256]``;
  it excludes times, ids, metadata and the segment layout, so it is independent of sharding, flush sizes
  and crashes. Equal digests mean equal feature bytes for every sample.
* **Incremental**: ``plan`` extracts only hashes the parent lacks (a changed file = new hash = new
  extraction; a renamed file is reused); deleted media are absent from the new snapshot; old snapshots stay
  readable until ``gc``.
* **Scale-out**: any number of shard writers per run, in any process or machine sharing the filesystem;
  one ``commit`` merges them (a hash staged by two shards is taken once, deterministically).

Public API
==========
``StoreSpec``, ``FeatureStore`` (``open_or_create``, ``open``, ``open_reader``, ``plan``, ``begin_run``,
``open_run``, ``commit``, ``snapshots``, ``latest``, ``snapshot``, ``gc``, ``verify``, ``info``), ``Plan``,
``Run`` (``shard_writer``, ``done_hashes``), ``ShardWriter`` (``add``, ``add_error``, ``flush``, ``close``,
``done_hashes``), ``SnapshotInfo`` (``content_digest()``), ``SnapshotReader`` (``get``, ``get_by_hash``,
``get_many``, ``status``, ``errors``, ``media_ids``, ``len``), ``QuarantineRecord``, and the errors.

Reads: segments are mapped with ``MADV_RANDOM`` (no read-around: on a kernel with 8 MB read-ahead one fault
used to read a whole segment, so resident memory grew with the store, not with what was read); rows not in
memory are requested with ``MADV_WILLNEED`` over exactly their bytes, all rows of a ``get_many`` (and of the
loader's next batches, ``SnapshotReader.prefetch``) before the first copy waits, so the disk sees them
together; a ``mincore`` check keeps warm reads from paying for that.

Limits: the store lock is ``flock`` (local filesystems and NFSv4; not object stores); one writer per
shard id at a time; readers build their media-id dict in memory (fine to tens of millions of rows).
"""

from __future__ import annotations

from .errors import (
    CorruptionError,
    IncompleteRunError,
    QuarantinedError,
    SnapshotNotFoundError,
    SpecMismatchError,
    StaleRunError,
    StoreBusyError,
    StoreError,
)
from .gc import GcReport
from .reader import SampleStatus, SnapshotReader
from .snapshot import QuarantineRecord, SnapshotInfo
from .spec import StoreSpec
from .store import FeatureStore, Plan
from .verify import VerifyReport
from .writer import Run, ShardWriter

__all__ = [
    "CorruptionError",
    "FeatureStore",
    "GcReport",
    "IncompleteRunError",
    "Plan",
    "QuarantineRecord",
    "QuarantinedError",
    "Run",
    "SampleStatus",
    "ShardWriter",
    "SnapshotInfo",
    "SnapshotNotFoundError",
    "SnapshotReader",
    "SpecMismatchError",
    "StaleRunError",
    "StoreBusyError",
    "StoreError",
    "StoreSpec",
    "VerifyReport",
]
