"""A Zarr v3 view of one snapshot: for analysis (Dask, xarray) and object storage, not for the training loader.

``export_zarr(store, out)`` writes a snapshot as a Zarr v3 group that any Zarr v3 reader understands without
this project (``dask.array.from_zarr(out, component="features")``, ``xarray.open_zarr(out)``):

=======================  ==================================================================================
array (dimension names)  content
=======================  ==================================================================================
``features``             fixed shape: ``(sample, d1, ...)`` one chunk per sample, ``SHARD_SAMPLES`` samples
                         per shard file; ragged (videos): ``(frame, d1, ...)``, frames of all samples in
                         order, ``RAGGED_CHUNK_FRAMES`` frames a chunk (samples have different lengths)
``frame_offsets``        ragged only: ``(sample + 1,)``, sample ``i`` is ``features[o[i]:o[i+1]]``
``media_id`` ...         per usable sample ``(sample,)``: ``media_id``, ``rel_path``, ``sha256`` (media
                         content hash), ``kind``, ``size``, ``feat_sha256`` (sha256 of its feature bytes)
``quarantine/*``         the quarantine table ``(quarantined,)``: ``media_id``, ``rel_path``, ``sha256``,
                         ``kind``, ``size``, ``reason``
=======================  ==================================================================================

The root group's attributes hold the extractor spec, its digest, the snapshot id, content digest and
metadata, and ``complete: true``, written last: a half-written export (killed, or an object store without
atomic renames) is refused by ``import_zarr``. Local targets are written to a temporary sibling directory
and renamed into place, so they exist complete or not at all.

``import_zarr(src, store)`` reads such a group back into a feature store as a new snapshot: every sample's
feature bytes are re-hashed against ``feat_sha256`` and the committed snapshot's content digest against the
exported one, so the round trip is bit-identical or fails loudly. Targets and sources are local paths or
fsspec URLs (``file://``, ``memory://``, ``s3://`` with the matching fsspec package installed).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..media import MediaItem
from .errors import CorruptionError, StoreError
from .layout import INDEX
from .reader import SnapshotReader
from .segment import feature_hash
from .snapshot import OK, read_index_table

ZARR_FORMAT = "vlpet-feature-zarr/1"
SHARD_SAMPLES = 256
RAGGED_CHUNK_FRAMES = 16
RAGGED_SHARD_FRAMES = 4096
SAMPLE_FIELDS = ("media_id", "rel_path", "sha256", "kind", "size", "feat_sha256")
QUARANTINE_FIELDS = ("media_id", "rel_path", "sha256", "kind", "size", "reason")
INT_FIELDS = ("size",)


def _is_url(target: str | os.PathLike) -> bool:
    return isinstance(target, str) and "://" in target


def _column(group: Any, name: str, values: list, dim: str) -> None:
    if name in INT_FIELDS:
        data = np.asarray(values, dtype=np.int64)
        dtype: Any = "int64"
    else:
        data = np.asarray(values, dtype=object) if values else np.empty(0, dtype=object)
        dtype = str
    arr = group.create_array(name, shape=(len(values),), dtype=dtype, chunks=(max(1, min(len(values), 65536)),),
                             dimension_names=[dim])
    if len(values):
        arr[:] = data


def _write(zarr: Any, group: Any, reader: SnapshotReader, info_attrs: dict[str, Any],
           progress: Callable | None) -> None:
    spec = reader.spec
    index = read_index_table(reader.snapshot.path / INDEX)
    rows = {name: index.column(name).to_pylist() for name in index.column_names}
    ok_pos = [i for i, st in enumerate(rows["status"]) if st == OK]
    bad_pos = [i for i, st in enumerate(rows["status"]) if st != OK]
    ok_ids = [rows["media_id"][i] for i in ok_pos]
    dims = [f"d{i}" for i in range(len(spec.row_shape))]
    if spec.ragged:
        frames = np.array([rows["frames"][i] for i in ok_pos], dtype=np.int64)
        offsets = np.zeros(len(ok_pos) + 1, dtype=np.int64)
        np.cumsum(frames, out=offsets[1:])
        total = int(offsets[-1])
        feats = group.create_array("features", shape=(total, *spec.row_shape), dtype=spec.dtype,
                                   chunks=(RAGGED_CHUNK_FRAMES, *spec.row_shape),
                                   shards=(RAGGED_SHARD_FRAMES, *spec.row_shape), dimension_names=["frame", *dims])
        fo = group.create_array("frame_offsets", shape=(len(offsets),), dtype="int64",
                                chunks=(max(1, min(len(offsets), 65536)),), dimension_names=["sample_edge"])
        fo[:] = offsets
        start = 0
        while start < len(ok_ids):  # whole shards at a time: a shard is written once, never re-read
            end = int(np.searchsorted(offsets, offsets[start] + RAGGED_SHARD_FRAMES, side="right")) - 1
            end = min(len(ok_ids), max(end, start + 1))
            block = np.concatenate(reader.get_many(ok_ids[start:end]))
            feats[int(offsets[start]):int(offsets[end])] = block
            start = end
            if progress:
                progress(end, len(ok_ids))
    else:
        n = len(ok_ids)
        feats = group.create_array("features", shape=(n, *spec.shape), dtype=spec.dtype, chunks=(1, *spec.shape),
                                   shards=(SHARD_SAMPLES, *spec.shape), dimension_names=["sample", *dims])
        for start in range(0, n, SHARD_SAMPLES):
            end = min(n, start + SHARD_SAMPLES)
            feats[start:end] = reader.get_many(ok_ids[start:end])
            if progress:
                progress(end, n)
    for name in SAMPLE_FIELDS:
        _column(group, name, [rows[name][i] for i in ok_pos], "sample")
    q = group.create_group("quarantine")
    for name in QUARANTINE_FIELDS:
        _column(q, name, [rows[name][i] or "" if name == "reason" else rows[name][i] for i in bad_pos],
                "quarantined")
    group.attrs.update(info_attrs)
    group.attrs["complete"] = True  # marks the export usable
    with warnings.catch_warnings():  # zarr-python and xarray read it; other readers ignore the extra key
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(group.store)  # one metadata read for xarray instead of one per array


def export_zarr(store: str | os.PathLike, out: str | os.PathLike, snapshot: str | None = None, *,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write ``snapshot`` (default: latest) of the feature store at ``store`` to a new Zarr v3 group ``out``
    (a local path or an fsspec URL). Refuses an existing target. Returns the group's attributes."""
    import zarr

    from .store import FeatureStore

    reader = FeatureStore.open_reader(store, snapshot)
    info = reader.snapshot
    attrs = {"format": ZARR_FORMAT, "spec": reader.spec.to_dict(), "spec_digest": reader.spec.digest(),
             "snapshot_id": info.id, "content_digest": info.content_digest(), "metadata": dict(info.metadata),
             "counts": {"ok": len(reader), "error": len(reader.all_media_ids) - len(reader)}}
    if _is_url(out) and not str(out).startswith("file://"):
        try:
            zarr.open_group(str(out), mode="r")
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
            pass
        else:
            raise StoreError(f"{out} already holds a Zarr group; export to a new location")
        _write(zarr, zarr.open_group(str(out), mode="w", zarr_format=3), reader, attrs, progress)
        return attrs
    dest = Path(str(out).removeprefix("file://"))
    if dest.exists():
        raise StoreError(f"{dest} already exists; export to a new path (or delete it first)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(zarr, zarr.open_group(str(tmp), mode="w", zarr_format=3), reader, attrs, progress)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return attrs


def _strings(arr: Any) -> list[str]:
    return [str(v) for v in np.asarray(arr[:], dtype=object)] if arr.shape[0] else []


def _open_export(src: str | os.PathLike) -> tuple[Any, dict[str, Any], Any]:
    """The exported group at ``src``, its attributes and store spec; refuses what is not a complete export."""
    import zarr

    from .spec import StoreSpec

    where = str(src).removeprefix("file://") if not _is_url(src) or str(src).startswith("file://") else str(src)
    try:
        group = zarr.open_group(where, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise StoreError(f"{src}: no Zarr group there ({e})") from e
    attrs = dict(group.attrs)
    if attrs.get("format") != ZARR_FORMAT:
        raise StoreError(f"{src}: not a vlpet feature export (format {attrs.get('format')!r}, want {ZARR_FORMAT})")
    if attrs.get("complete") is not True:
        raise StoreError(f"{src}: the export is incomplete (interrupted?); export again")
    spec = StoreSpec.from_dict(attrs["spec"])
    if spec.digest() != attrs.get("spec_digest"):
        raise CorruptionError(f"{src}: spec digest does not match the exported spec")
    return group, attrs, spec


def _exported_samples(feats: Any, offsets: np.ndarray | None, n: int,
                      spec: Any) -> Iterator[tuple[int, np.ndarray]]:
    """``(sample index, features)`` for every exported sample, read a shard-sized block at a time."""
    block = RAGGED_SHARD_FRAMES if offsets is not None else SHARD_SAMPLES
    start = 0
    while start < n:
        if offsets is not None:
            end = int(np.searchsorted(offsets, offsets[start] + block, side="right")) - 1
            end = min(n, max(end, start + 1))
            data = feats[int(offsets[start]):int(offsets[end])]
            parts = np.split(data, (offsets[start + 1:end] - offsets[start]).tolist())
        else:
            end = min(n, start + block)
            parts = list(feats[start:end])
        for i, arr in zip(range(start, end), parts, strict=True):
            yield i, np.ascontiguousarray(arr, dtype=spec.np_dtype)
        start = end


def import_zarr(src: str | os.PathLike, store: str | os.PathLike) -> Any:
    """Commit the snapshot exported at ``src`` into the feature store at ``store`` (created when missing; an
    existing store must hold the same extractor spec). Returns the new ``SnapshotInfo``; its content digest
    equals the exported one, every feature byte is checked against the exported per-sample hashes."""
    from .store import FeatureStore

    group, attrs, spec = _open_export(src)
    cols = {n: (np.asarray(group[n][:], dtype=np.int64).tolist() if n in INT_FIELDS else _strings(group[n]))
            for n in SAMPLE_FIELDS}
    q = group["quarantine"]
    qcols = {n: (np.asarray(q[n][:], dtype=np.int64).tolist() if n in INT_FIELDS else _strings(q[n]))
             for n in QUARANTINE_FIELDS}
    feats = group["features"]
    n = len(cols["media_id"])
    if spec.ragged:
        offsets = np.asarray(group["frame_offsets"][:], dtype=np.int64)
        if len(offsets) != n + 1 or offsets[-1] != feats.shape[0]:
            raise CorruptionError(f"{src}: frame_offsets do not match features {feats.shape} for {n} samples")
    elif feats.shape[0] != n:
        raise CorruptionError(f"{src}: features has {feats.shape[0]} rows for {n} samples")
    items = [MediaItem(cols["media_id"][i], cols["rel_path"][i], cols["sha256"][i], cols["kind"][i],
                       cols["size"][i]) for i in range(n)]
    bad = [MediaItem(qcols["media_id"][i], qcols["rel_path"][i], qcols["sha256"][i], qcols["kind"][i],
                     qcols["size"][i]) for i in range(len(qcols["media_id"]))]
    fs = FeatureStore.open_or_create(store, spec)
    run = fs.begin_run()
    with run.shard_writer("zarr-import") as w:
        for i, arr in _exported_samples(feats, offsets if spec.ragged else None, n, spec):
            if feature_hash(arr) != cols["feat_sha256"][i]:
                raise CorruptionError(f"{src}: the features of {items[i].media_id!r} do not match their "
                                      f"recorded sha256 {cols['feat_sha256'][i][:16]}...")
            w.add(items[i], arr)
        for it, reason in zip(bad, qcols["reason"], strict=True):
            w.add_error(it, reason)
    snap = fs.commit(run, items + bad, attrs.get("metadata") or {})
    if snap.content_digest() != attrs.get("content_digest"):
        raise CorruptionError(f"{src}: imported snapshot {snap.id} has content digest {snap.content_digest()[:16]}, "
                              f"the export recorded {str(attrs.get('content_digest'))[:16]}")
    return snap
