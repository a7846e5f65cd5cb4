"""The extraction engine: media files → features in a feature store, batched, incremental, crash-safe.

Pipeline: a torch ``DataLoader`` decodes and preprocesses media in worker processes (uint8 tensors,
so the transfer is cheap) while the main process runs batched forwards; results go to a shard writer of
the store's current run and one commit publishes the snapshot. Decoding and the model overlap through
the loader's prefetching.

Reproducibility: the batch boundaries are a function of the plan only (``plan.to_extract`` in media-id
order, cut every ``batch_size`` items), never of what a killed run had already written, so a resumed
run computes every sample inside the same batch composition as an uninterrupted one (CPU kernels may
pick other algorithms for other batch sizes) and the committed snapshot is bit-identical.

Bad media never stop a run: each failure is quarantined in the store with path, hash and reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from features.decode import BadMediaError, captured_native_stderr, stable_detail
from features.extractors import Extractor, get_extractor
from features.forkguard import SEED_OR_FORK
from features.media import MediaItem, MediaPathError, hash_bytes, hash_file, resolve_inside, scan_media
from features.store import FeatureStore, StoreSpec
from features.weights import expected_key
from vlpet.device import resolve_device  # also imported from here by the flows
from vlpet.hub import WeightsUnavailableError

log = logging.getLogger(__name__)
VIDEO_CHUNK_FRAMES = 64  # frames per forward for videos, as the HERO extractor


@dataclass
class ExtractReport:
    store: str
    extractor: str
    device: str
    snapshot: str | None
    content_digest: str | None
    random_init: bool
    items: int
    extracted: int
    reused: int
    deleted: int
    quarantined: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # files not taken (outside the media root)
    seconds: float = 0.0
    model_seconds: float = 0.0
    items_per_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_batch_size(extractor: Extractor) -> int:
    """CPU: 8 (RN101 with channels_last peaks there, docs/operations.md); GPU: 128 images or 4 videos."""
    if extractor.device.type == "cuda":
        return 128 if extractor.kind == "image" else 4
    return 8 if extractor.kind == "image" else 2


def default_workers() -> int:
    """One decoding process per spare core (at least one, so decoding overlaps the forward)."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


DEVICE_DECODE = "torchvision.io.decode_jpeg (batched, on the extractor's device) + torch bicubic antialias resize"


def jpeg_for_device(data: bytes, max_pixels: int | None) -> bool:
    """Whether ``data`` is a complete baseline/progressive RGB or greyscale JPEG within the pixel guard, so the
    batched device decoder may take it; anything else (PNG, CMYK, truncated: no EOI marker, bombs) takes the
    PIL path, which also classifies bad media."""
    import io

    from PIL import Image

    if len(data) < 4 or data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return False
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            return im.format == "JPEG" and im.mode in ("RGB", "L") and (max_pixels is None or w * h <= max_pixels)
    except Exception:
        return False


HASH_MISMATCH = "hash-mismatch"


class _DecodeDataset(Dataset):
    """Decode + preprocess one item in a worker; failures come back as a reason, not an exception.

    Every file is hashed from the bytes that are decoded (images: decoded from that very buffer; videos: hashed
    in one streaming pass before decoding); when they do not hash to the item's sha256 the item comes back as
    ``HASH_MISMATCH`` with the actual hash, and nothing is stored under a hash that does not name those bytes.
    Native decoder output (libav, decord) is captured into the reason, never printed.

    With ``device_decode``, JPEGs that pass ``jpeg_for_device`` come back as raw bytes (flag True) for the
    main process to decode in one batched call on the device."""

    def __init__(self, root: Path, items: Sequence[MediaItem], extractor: Extractor,
                 device_decode: bool = False) -> None:
        self.root, self.items, self.extractor = root, list(items), extractor
        self.device_decode = device_decode

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None, bool]:
        item = self.items[i]
        path = self.root / item.rel_path
        if self.extractor.kind != "image":
            return (*self._decode(i, item), False)
        try:
            data = path.read_bytes()
        except OSError as e:
            return i, None, f"unreadable: {type(e).__name__}: {stable_detail(str(e), path)}", False
        actual = hash_bytes(data)
        if actual != item.sha256:
            return i, None, f"{HASH_MISMATCH}: {actual}", False
        if self.device_decode:
            opts = getattr(self.extractor, "decode_options", None)
            if jpeg_for_device(data, getattr(opts, "max_pixels", None)):
                return i, torch.frombuffer(bytearray(data), dtype=torch.uint8), None, True
        return (*self._decode(i, item, data), False)

    def _decode(self, i: int, item: MediaItem, data: bytes | None = None
                ) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.root / item.rel_path
        native: list[str] = []
        try:
            if data is None:
                if self.extractor.kind == "image":
                    data = path.read_bytes()
                    actual = hash_bytes(data)
                else:
                    actual = hash_file(path)
                if actual != item.sha256:
                    return i, None, f"{HASH_MISMATCH}: {actual}"
            with captured_native_stderr(native):
                x = self.extractor.preprocess(self.extractor.decode(data if data is not None else path),
                                              as_uint8=True)
            if x.shape[0] == 0:
                return i, None, "no-frames: no frames could be sampled"
            return i, x, None
        except BadMediaError as e:
            reason = e.stable_reason()
        except OSError as e:
            reason = f"unreadable: {type(e).__name__}: {stable_detail(str(e), path)}"
        except Exception as e:
            reason = f"error: {type(e).__name__}: {stable_detail(str(e), path)}"
        if native:
            reason += " [decoder output: " + stable_detail(" | ".join(native), path)[:1000] + "]"
        return i, None, reason


def _collate(batch: list) -> list:
    return batch


class MediaIndexError(ValueError):
    """A media index row that cannot be trusted: its path leaves the media root, its file is missing, or its
    size or sha256 does not describe the file's bytes."""


def _index_problems(root: Path, rows: list[dict[str, Any]], source: Path) -> list[str]:
    """What is wrong with each row (path confinement, existence, size), as messages naming the row."""
    problems = []
    for n, r in enumerate(rows):
        where = f"{source} row {n} (media_id {r['media_id']!r}, rel_path {r['rel_path']!r})"
        try:
            path = resolve_inside(root, r["rel_path"])
        except MediaPathError as e:
            problems.append(f"{where}: {e}")
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{where}: no such file under the media root {root}")
            continue
        if size != int(r["size"]):
            problems.append(f"{where}: the index says {r['size']} bytes, the file has {size}")
    return problems


def load_media_items(media: str | os.PathLike[str], kind: str, media_root: str | os.PathLike[str] | None = None,
                     refused: list[tuple[str, str]] | None = None) -> tuple[Path, list[MediaItem]]:
    """A folder (searched recursively, hashed; files of ``kind`` only, symlinks leaving it go to ``refused``)
    or a media index (Arrow IPC with media_id, rel_path, sha256, kind, size; paths relative to ``media_root``,
    default the index's folder). Index rows are checked here (path inside the root, file present, size) and
    their sha256 when the bytes are read for extraction; a row that fails is refused with ``MediaIndexError``."""
    path = Path(media)
    if path.is_dir():
        items = scan_media(path, kind=kind, refused=refused)  # type: ignore[arg-type]
        return path, items
    if path.is_file():
        import pyarrow as pa

        try:
            with pa.memory_map(str(path)) as src:
                table = pa.ipc.open_file(src).read_all()
        except pa.ArrowInvalid as e:
            raise MediaIndexError(f"{path} is not a media index (an Arrow IPC file): {e}") from None
        missing = {"media_id", "rel_path", "sha256", "kind", "size"} - set(table.column_names)
        if missing:
            raise MediaIndexError(f"{path} is not a media index: columns {sorted(missing)} are missing")
        root = Path(media_root) if media_root else path.parent
        rows = [r for r in table.to_pylist() if r["kind"] == kind]
        problems = _index_problems(root, rows, path)
        if problems:
            raise MediaIndexError(f"{len(problems)} media index row(s) refused; fix or rebuild the index:\n  "
                                  + "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else ""))
        try:
            items = [MediaItem(r["media_id"], r["rel_path"], r["sha256"], r["kind"], int(r["size"])) for r in rows]
        except ValueError as e:
            raise MediaIndexError(f"{path}: {e}") from None
        return root, sorted(items, key=lambda it: it.media_id)
    raise FileNotFoundError(f"{media}: no such folder or media index")


def refuse_mismatches(mismatched: Sequence[tuple[MediaItem, str]]) -> None:
    """Raise ``MediaIndexError`` naming every item whose bytes do not hash to the sha256 it was planned under
    (a stale media index, or a file rewritten during the run); nothing was stored for them."""
    if not mismatched:
        return
    lines = [f"{it.rel_path} (media_id {it.media_id!r}): expected sha256 {it.sha256}, "
             + (why if why.startswith("but ") else f"the file's bytes hash to {why}") for it, why in mismatched[:10]]
    raise MediaIndexError(f"{len(mismatched)} media file(s) do not match the hash they were listed with, so their "
                          "features were not stored (the other files' are staged and reused by the next run); "
                          "rebuild the media index (or re-run on the folder):\n  " + "\n  ".join(lines)
                          + ("\n  ..." if len(mismatched) > 10 else ""))


def store_spec(extractor: Extractor, device_decode: bool = False) -> StoreSpec:
    """The store spec features from ``extractor`` belong to (one store per spec)."""
    out = extractor.outputs[extractor.primary]
    shape = tuple(out.shape)
    ragged = extractor.kind == "video"
    # fp32 (CPU) and fp16-autocast (GPU) features differ slightly: precision is part of what a store holds,
    # so a GPU run never adds to a CPU-made store (or the reverse) unnoticed.
    params = {**extractor.spec_params(), "precision": extractor.precision}
    if device_decode:  # other pixels than PIL's resize: a different store, never mixed with the PIL path
        params = {**params, "jpeg_decode": DEVICE_DECODE}
    return StoreSpec(extractor=extractor.name, shape=(None, *shape[1:]) if ragged else shape, dtype="float16",
                     ragged=ragged, params=params)


def _decode_on_device(extractor: Extractor, raw: list[torch.Tensor]) -> list[torch.Tensor]:
    """Batched JPEG decode on the extractor's device (nvJPEG on CUDA), then a 224x224 bicubic resize there."""
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    size = (extractor.image_size, extractor.image_size)
    images = decode_jpeg(raw, mode=ImageReadMode.RGB, device=extractor.device, apply_exif_orientation=True)
    out = []
    for img in images:
        x = F.interpolate(img.unsqueeze(0).float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return out


def _forward(extractor: Extractor, x: torch.Tensor) -> np.ndarray:
    if extractor.kind == "video" and x.shape[0] > VIDEO_CHUNK_FRAMES:
        parts = [extractor.forward(x[s:s + VIDEO_CHUNK_FRAMES]) for s in range(0, x.shape[0], VIDEO_CHUNK_FRAMES)]
        return extractor.to_storage(torch.cat(parts))
    return extractor.to_storage(extractor.forward(x))


def _finish_decoding(batch: list, extractor: Extractor, dataset: _DecodeDataset,
                     items: Sequence[MediaItem]) -> list[tuple[int, Any, str | None]]:
    """``(index, pixels, error)`` per item of a loaded batch: JPEGs the workers left raw are decoded here on
    the extractor's device, falling back to PIL (which classifies the bad ones) if the device decoder refuses."""
    raw = [(i, x) for i, x, err, is_raw in batch if is_raw]
    out = [(i, x, err) for i, x, err, is_raw in batch if not is_raw]
    if raw:
        try:
            out += [(i, x, None) for (i, _), x in zip(raw, _decode_on_device(extractor, [x for _, x in raw]),
                                                       strict=True)]
        except RuntimeError:  # the device decoder refused one: decode these with PIL (and classify)
            out += [dataset._decode(i, items[i]) for i, _ in raw]
        out.sort(key=lambda b: b[0])
    return out


def _record_failures(batch: list[tuple[int, Any, str | None]], items: Sequence[MediaItem], writer: Any,
                     counts: dict[str, Any]) -> None:
    """Quarantine the items that failed to decode; collect those whose bytes do not match the index."""
    for i, _, err in batch:
        if err is not None and err.startswith(HASH_MISMATCH + ":"):
            counts["mismatched"].append((items[i], err.split(":", 1)[1].strip()))
        elif err is not None and writer.add_error(items[i], err):
            counts["quarantined"] += 1  # reported once, by the caller (the CLI lists the snapshot's)
            log.debug("quarantined %s (%s): %s", items[i].rel_path, items[i].sha256[:12], err)


def _write_features(good: list[tuple[int, torch.Tensor]], items: Sequence[MediaItem], extractor: Extractor,
                    writer: Any) -> int:
    """Run the model on the decoded items (images as one batch, videos one by one); returns rows written."""
    written = 0
    if extractor.kind == "image" and good:
        feats = _forward(extractor, torch.cat([x for _, x in good]))
        for (i, _), arr in zip(good, feats, strict=True):
            written += writer.add(items[i], arr)
    else:
        for i, x in good:
            written += writer.add(items[i], _forward(extractor, x))
    return written


def extract_shard(store: FeatureStore, run: Any, root: Path, items: Sequence[MediaItem], extractor: Extractor, *,
                  shard_id: str = "0", batch_size: int | None = None, workers: int | None = None,
                  progress: bool = True, flush_rows: int | None = None,
                  shard: tuple[int, int] = (0, 1), device_decode: bool = False) -> dict[str, Any]:
    """Extract a plan's ``to_extract`` ``items`` into ``run``'s shard ``shard_id``.

    Batches are cut from the whole of ``items`` in order; ``shard=(k, n)`` takes batches k, k+n, k+2n…,
    so n shards together compute exactly the batches one process would (same composition, same bits).
    A batch whose items are all written already (by a killed run) is skipped, a partly written one is
    recomputed whole (the writer ignores known hashes).
    """
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k} of {n} does not exist: use 0 <= k < n")
    from tqdm import tqdm

    bs = batch_size or default_batch_size(extractor)
    nw = default_workers() if workers is None else workers
    writer = run.shard_writer(shard_id, **({"flush_rows": flush_rows} if flush_rows else {}))
    done = set(run.done_hashes())
    batches = [list(range(s, min(s + bs, len(items)))) for s in range(0, len(items), bs)][k::n]
    todo = [b for b in batches if not all(items[i].sha256 in done for i in b)]
    counts: dict[str, Any] = {"extracted": 0, "quarantined": 0, "model_seconds": 0.0, "mismatched": []}
    if not todo:
        writer.close()
        return counts
    cuda = extractor.device.type == "cuda"
    device_decode = device_decode and extractor.kind == "image"
    dataset = _DecodeDataset(root, items, extractor, device_decode)
    # A private generator: the loader draws its workers' base seed from it instead of torch's process-wide one,
    # which another thread may be seeding to build a random-init model (concurrent extractions in one flow).
    loader = DataLoader(dataset, batch_sampler=todo, num_workers=nw,
                        collate_fn=_collate, pin_memory=cuda, persistent_workers=False,
                        prefetch_factor=4 if nw else None, generator=torch.Generator())
    unit = "img" if extractor.kind == "image" else "video"
    bar = tqdm(total=sum(map(len, todo)), unit=unit, disable=not progress, desc=extractor.name,
               smoothing=0.1)
    with SEED_OR_FORK:  # the workers fork here: never while another thread is inside torch.manual_seed
        loaded = iter(loader)
    try:
        for loaded_batch in loaded:
            batch = _finish_decoding(loaded_batch, extractor, dataset, items)
            good = [(i, x.to(extractor.device)) for i, x, err in batch if err is None]
            _record_failures(batch, items, writer, counts)
            t = time.perf_counter()
            counts["extracted"] += _write_features(good, items, extractor, writer)
            counts["model_seconds"] += time.perf_counter() - t
            bar.update(len(batch))
    finally:
        bar.close()
        writer.close()
    return counts


class WeightsLoadError(ValueError):
    """The weights a ``--pretrained`` value names cannot be loaded (not a checkpoint, truncated, wrong model)."""


def _load_weights(ex: Extractor) -> Any:
    """Build the extractor's model and return its weights identity; a weights file that does not load is a
    ``WeightsLoadError`` naming it (torch/open_clip raise unpickling or runtime errors that do not)."""
    try:
        return ex.identity
    except (ValueError, FileNotFoundError, WeightsUnavailableError):
        raise
    except Exception as e:
        raise WeightsLoadError(f"--pretrained {ex.pretrained}: cannot load {ex.model_name} weights from it "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:300]}); pass an open_clip "
                               f"checkpoint of that model, an open_clip tag, or nothing for OpenAI's weights") from None


def _check_reused_sizes(store: FeatureStore, reused: Sequence[MediaItem]) -> None:
    """Reused items are not read again; the cheap check that they are what their hash names: the file's size
    (checked against the item when it was listed) must be the size the store recorded for that hash. A stale
    index listing a file under another file's hash is refused here instead of silently getting its features."""
    latest = store.latest()
    if latest is None or not reused:
        return
    known = {r.sha256: r.size for r in store._index_rows(latest)}
    refuse_mismatches([(it, f"but the store recorded {known[it.sha256]} bytes for that hash and this file has "
                            f"{it.size}") for it in reused if known.get(it.sha256, it.size) != it.size])


def extract(media: str | os.PathLike[str], store_path: str | os.PathLike[str], *,
            extractor: str | Extractor = "clip-rn101-grid", device: str = "auto", batch_size: int | None = None,
            workers: int | None = None, pretrained: str | None = None, media_root: str | None = None,
            progress: bool = True, flush_rows: int | None = None, device_decode: bool = False,
            wait: bool = True, on_wait: Any = None, weights: str = "official") -> ExtractReport:
    """Extract every new or changed media file under ``media`` into the store at ``store_path`` and commit.

    ``weights``: ``official`` (default: OpenAI's CLIP, downloaded on first use, or ``pretrained``) or
    ``random``. The weights are resolved (downloaded) before the store is touched, so weights that cannot be
    had (:class:`vlpet.hub.WeightsUnavailableError`) leave nothing written; a store whose features come from
    other weights is refused (:class:`WeightsMismatchError`).
    One writer per store: the run holds the store's writer lock from planning to commit; a second writer waits
    (``on_wait(holder)`` is called once) or, with ``wait=False``, raises ``StoreBusyError``. Runs orphaned by
    earlier writers are removed once the lock is held.

    ``device_decode``: decode JPEGs in batches on the extractor's device (nvJPEG on a GPU) instead of PIL in
    the workers; its resize differs slightly from PIL's, so it is a separate store spec."""
    t0 = time.perf_counter()
    ex = extractor if isinstance(extractor, Extractor) else get_extractor(
        extractor, pretrained=pretrained, device=resolve_device(device), weights=weights)
    refused: list[tuple[str, str]] = []
    root, items = load_media_items(media, ex.kind, media_root, refused)
    store_path = Path(store_path)
    cheap_key = expected_key(ex.model_name, ex.pretrained, quick_gelu=ex.quick_gelu, weights=ex.weights,
                             seed=ex._load_kwargs.get("seed", 0),
                             cache_dir=ex._load_kwargs.get("cache_dir")) if ex._model is None else None
    if cheap_key is None:
        cheap_key = _load_weights(ex).key()  # a build is the only way to know: still before the store is touched
    refuse_other_weights(store_path, cheap_key)
    if not (store_path / "STORE.json").exists():
        _load_weights(ex)  # a new store: load the weights first, so a bad --pretrained leaves no empty store behind
    store = FeatureStore.open_or_create(store_path, store_spec(ex, device_decode))
    with store.writer(wait=wait, on_wait=on_wait):
        report = _extract_locked(store, root, items, ex, t0, cheap_key, batch_size=batch_size, workers=workers,
                                 progress=progress, flush_rows=flush_rows, device_decode=device_decode)
    report.refused = [{"rel_path": rel, "reason": why} for rel, why in refused]
    return report


def _extract_locked(store: FeatureStore, root: Path, items: list[MediaItem], ex: Extractor, t0: float,
                    cheap_key: str, *, batch_size: int | None, workers: int | None, progress: bool,
                    flush_rows: int | None, device_decode: bool) -> ExtractReport:
    store_path = store.root
    latest = store.latest()
    if cheap_key is not None and latest is not None and latest.metadata.get("weights") == cheap_key:
        plan = store.plan(items, weights=cheap_key)
        _check_reused_sizes(store, plan.reused)
        if not plan.to_extract and not plan.deleted and not plan.changed:
            # Unchanged: the latest snapshot already is the answer; do not even build the model.
            reader = FeatureStore.open_reader(store_path, snapshot=latest.id)
            return ExtractReport(
                store=str(store_path), extractor=ex.name, device=str(ex.device), snapshot=latest.id,
                content_digest=latest.content_digest(), random_init=bool(latest.metadata.get("random_init")),
                items=len(items), extracted=0, reused=len(plan.reused), deleted=0,
                quarantined=[asdict(e) for e in reader.errors()], seconds=round(time.perf_counter() - t0, 3))
    identity = _load_weights(ex)
    if cheap_key != identity.key():
        raise RuntimeError(f"weights key drift: expected {cheap_key}, the loaded model is {identity.key()}")
    if identity.random_init:  # features.weights has already warned loudly; the snapshot records it
        log.debug("%s: random-init weights, recorded in the snapshot metadata", ex.name)
    plan = store.plan(items, weights=identity.key())
    _check_reused_sizes(store, plan.reused)
    run = store.begin_run(plan=plan)
    counts = extract_shard(store, run, root, plan.to_extract, ex, batch_size=batch_size, workers=workers,
                           progress=progress, flush_rows=flush_rows, device_decode=device_decode)
    refuse_mismatches(counts["mismatched"])
    snap = store.commit(run, items, metadata={"weights": identity.key(), "random_init": identity.random_init,
                                              "weights_identity": identity.as_dict(), **ex.runtime_params()})
    reader = FeatureStore.open_reader(store_path, snapshot=snap.id)
    quarantined = [asdict(e) for e in reader.errors()]
    seconds = time.perf_counter() - t0
    return ExtractReport(
        store=str(store_path), extractor=ex.name, device=str(ex.device), snapshot=snap.id,
        content_digest=snap.content_digest(), random_init=identity.random_init, items=len(items),
        extracted=counts["extracted"], reused=len(plan.reused), deleted=len(plan.deleted),
        quarantined=quarantined, seconds=round(seconds, 3), model_seconds=round(counts["model_seconds"], 3),
        items_per_s=round(counts["extracted"] / seconds, 3) if counts["extracted"] else 0.0)


class WeightsMismatchError(ValueError):
    """A store holds features of other weights than the ones this run would use."""


def refuse_other_weights(store_path: str | os.PathLike[str], key: str) -> None:
    """Refuse to add features of weights ``key`` to a store whose latest snapshot holds other weights' features
    (they would not be comparable: one store, one set of weights). Reads only; a missing store is fine."""
    path = Path(store_path)
    if not path.is_dir():
        return
    try:
        latest = FeatureStore.open(path).latest()
    except Exception:  # not a store (yet): open_or_create says what is wrong with it
        return
    held = latest.metadata.get("weights") if latest is not None else None
    if held is not None and held != key:
        raise WeightsMismatchError(
            f"store {path} holds features made with weights {held}, and this run would use {key}: features of "
            "different weights never share a store. Use another --store, or the same weights as before "
            "(--weights / --pretrained); `vlpet store info` shows which weights a store holds")


@dataclass
class ExtractionJob:
    """A planned extraction, picklable, for shards run by other processes or machines (Dask workers):
    ``with plan_extraction(...) as job:`` → ``run_extraction_shard`` for k in 0..n-1 (anywhere) →
    ``commit_extraction``, all inside the block (it holds the store's writer lock)."""

    store: str
    root: str
    extractor: str
    pretrained: str | None
    run_id: str
    items: list[MediaItem]
    to_extract: list[MediaItem]
    batch_size: int
    metadata: dict[str, Any]
    weights: str = "official"


@contextlib.contextmanager
def plan_extraction(media: str | os.PathLike[str], store_path: str | os.PathLike[str], *,
                    extractor: str = "clip-rn101-grid", pretrained: str | None = None, batch_size: int | None = None,
                    media_root: str | None = None, device: str = "auto", weights: str = "official",
                    wait: bool = True, on_wait: Any = None) -> Iterator[ExtractionJob]:
    """Scan and hash the media, load the weights, open the store, plan against its latest snapshot, and stage
    the run (weights that cannot be had, or differ from the store's, stop it before anything is written).

    A context manager: the store's writer lock is held from planning until the block ends, so the shards and
    ``commit_extraction`` run inside it and a second writer waits (``on_wait(holder)``) or, with
    ``wait=False``, gets ``StoreBusyError`` instead of planning the same work twice."""
    ex = get_extractor(extractor, pretrained=pretrained, device=resolve_device(device), weights=weights)
    root, items = load_media_items(media, ex.kind, media_root)
    identity = ex.identity
    refuse_other_weights(store_path, identity.key())
    store = FeatureStore.open_or_create(store_path, store_spec(ex))
    with store.writer(wait=wait, on_wait=on_wait):
        plan = store.plan(items, weights=identity.key())
        run = store.begin_run(plan=plan)
        meta = {"weights": identity.key(), "random_init": identity.random_init,
                "weights_identity": identity.as_dict(), **ex.runtime_params()}
        yield ExtractionJob(str(store_path), str(root), extractor, pretrained, run.run_id, items, plan.to_extract,
                            batch_size or default_batch_size(ex), meta, weights)


def run_extraction_shard(job: ExtractionJob, shard: int, n_shards: int, *, device: str = "auto",
                         workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Extract shard ``shard`` of ``n_shards`` of a planned job (in this process, on ``device``)."""
    ex = get_extractor(job.extractor, pretrained=job.pretrained, device=resolve_device(device), weights=job.weights)
    if ex.identity.key() != job.metadata["weights"]:
        raise ValueError(f"shard {shard}: this worker's weights {ex.identity.key()} differ from the plan's "
                         f"{job.metadata['weights']}; every worker needs the same weights (the same --pretrained "
                         "file, or the same Hugging Face cache: `vlpet weights fetch`, then copy the cache)")
    store = FeatureStore.open(job.store)
    want = store.spec.params.get("precision")
    if want is not None and want != ex.precision:
        raise ValueError(f"shard {shard}: this worker computes in {ex.precision} on {ex.device}, but the store "
                         f"{job.store} holds {want} features; run every shard on the same kind of device")
    run = store.open_run(job.run_id)
    counts = extract_shard(store, run, Path(job.root), job.to_extract, ex, shard_id=f"{shard}-of-{n_shards}",
                           batch_size=job.batch_size, workers=workers, progress=progress, shard=(shard, n_shards))
    refuse_mismatches(counts.pop("mismatched"))
    return counts


def commit_extraction(job: ExtractionJob) -> str:
    """Merge every shard of the job's run into one snapshot; returns its id."""
    store = FeatureStore.open(job.store)
    return store.commit(store.open_run(job.run_id), job.items, metadata=job.metadata).id
