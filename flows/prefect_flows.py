"""The pipeline's Prefect flows, thin wrappers around cached, lineage-recording plain stage functions.

Flows (their names are the interface; ``vlpet serve`` serves each as the deployment ``<name>/default``):

- ``download``          ``download_flow(dataset, root="data", mirror=None, media_from=None, ...)``
- ``prepare``           ``prepare_flow(dataset, root="data")``
- ``extract-features``  ``extract_features_flow(media, store, extractor="clip-rn101-grid", device="auto",
  cluster=None, batch_size=None, workers=None, pretrained=None, media_root=None, root=None)``
- ``build-dataset``     ``build_dataset_flow(task, store, root="data", splits=None, snapshot=None, dataset=None)``
- (``train``, ``evaluate``, ``end-to-end``: added below the marked place, reusing ``cached_stage``.)

Each ``run_*`` function is a plain function (no Prefect needed; the tests call them directly): it keys the
stage by the content of its inputs, its parameters and the code version of the packages it runs
(``flows.caching.run_cached``), returns the recorded result on a hit without doing any work, and records a
lineage record per artifact it wrote (``flows.lineage.LineageStore``; inside a flow run these also become
Prefect artifacts and ``vlpet.artifact.recorded`` events). Cache and lineage live under the data root
(``<root>/.vlpet/``); for ``extract-features`` the root is ``root``, else ``$VLPET_DATA_ROOT``, else the
store's parent folder.

Scale-out (``extract-features`` with ``cluster``): ``plan_extraction`` stages one run of the store, one coarse
Prefect task per shard (``run_extraction_shard(job, k, n)``) runs on a Dask cluster through prefect-dask's
``DaskTaskRunner`` (a subflow ``extract-features-shards`` carries that task runner), then
``commit_extraction`` publishes one snapshot, bit-identical to a single-process extraction (batches are cut
from the whole plan, shard k takes batches k, k+n, ...). ``cluster``:

- ``"local:N"``: a ``distributed.LocalCluster`` of N single-threaded worker processes on this machine;
- ``"tcp://host:port"``: an existing scheduler (``dask scheduler`` + ``dask worker tcp://host:port`` on each
  machine; every worker must see the store and media paths, i.e. a shared filesystem);
- ``"local-cuda"``: ``dask_cuda.LocalCUDACluster()``, one worker per visible GPU (``pip install dask-cuda``).

Multi-GPU recipe: on a machine with G GPUs, ``cluster="local-cuda"`` (or start
``dask scheduler`` and ``dask-cuda-worker tcp://host:8786`` per machine, then ``cluster="tcp://host:8786"``):
each worker process is pinned to one GPU through ``CUDA_VISIBLE_DEVICES``, so ``device="auto"`` resolves to
that worker's GPU; ``shards`` defaults to the number of workers. Every worker needs the same weights file
(``pretrained``), else the shard refuses to run. Dask worker processes are daemonic and cannot start
DataLoader processes, so decoding runs in the worker process unless ``workers`` is set (and the Dask
config ``distributed.worker.daemon: false``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE

from flows.caching import StageCache, code_version, run_cached, vlpet_dir, write_json_atomic
from flows.lineage import LineageRecord, LineageStore

log = logging.getLogger(__name__)
DEFAULT_EXTRACTOR = "clip-rn101-grid"
# Raw folders each dataset's preparation reads besides its own (pipelines.prepare): VQA's Karpathy splits and
# images come from COCO, TVC's videos and subtitles from TVQA.
PREPARE_READS: dict[str, tuple[str, ...]] = {"vqa": ("coco",), "tvc": ("tvqa",)}
CODE = {"download": ("pipelines",), "prepare": ("pipelines", "features"), "extract-features": ("features",),
        "build-dataset": ("pipelines", "features")}


# ================================================================================================ helpers


def cached_stage(root: str | os.PathLike[str], stage: str, params: Mapping[str, Any], inputs: Mapping[str, str],
                 fn: Callable[[], Mapping[str, Any]], *, packages: Iterable[str] = (),
                 force: bool = False) -> tuple[dict[str, Any], bool]:
    """``run_cached`` on the cache of data root ``root``, logging hit/miss; returns ``(result, hit)``.

    The building block of every stage (train/evaluate reuse it): ``fn`` does the work and records lineage,
    returning a JSON dict with ``outputs`` (paths, hashed for the cache) and whatever the caller needs."""
    cache = StageCache(root)
    t = time.perf_counter()
    result, hit = run_cached(cache, stage, params, inputs, fn, packages=packages, force=force)
    log.info("%s: %s (%.2f s) key %s", stage, "cache hit, skipped" if hit else "computed",
             time.perf_counter() - t, result.get("cache_key", "")[:12])
    return {**result, "cache_hit": hit}, hit


def _abs(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


def _is_synthetic_mirror(mirror: str | None) -> bool:
    """A ``file://`` mirror written by ``pipelines.synth.generate`` (it leaves its manifest at the top)."""
    if not mirror or not mirror.startswith("file://"):
        return False
    top = Path(mirror.removeprefix("file://"))
    try:
        return json.loads((top / "manifest.json").read_text()).get("format") == "vlpet-synth-manifest"
    except (OSError, ValueError):
        return False


def _mirror_dir(mirror: str | None, dataset: str) -> Path | None:
    if mirror and mirror.startswith("file://"):
        d = Path(mirror.removeprefix("file://")) / dataset
        return d if d.is_dir() else None
    return None


def stage_lineage_root(store: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    """The data root for a stage given only a store path: ``root``, ``$VLPET_DATA_ROOT``, or the store's parent."""
    if root:
        return Path(root)
    if os.environ.get("VLPET_DATA_ROOT"):
        return Path(os.environ["VLPET_DATA_ROOT"])
    return Path(store).expanduser().resolve().parent


# ================================================================================================ download


def run_download(dataset: str, root: str | os.PathLike[str] = "data", *, mirror: str | None = None,
                 media_from: str | os.PathLike[str] | None = None, include_optional: bool = False,
                 force: bool = False, progress: bool = False) -> dict[str, Any]:
    """``pipelines.fetch.fetch_dataset`` keyed by (dataset, mirror, options, mirror/media content, code).

    For a ``file://`` mirror the key includes the mirror folder's content hash; for an HTTP mirror the stage
    is keyed by its parameters, and a hit also needs every downloaded file unchanged on disk."""
    from pipelines.fetch import MANIFEST, fetch_dataset, raw_dir
    from pipelines.sources import get_source

    source = get_source(dataset)
    root = Path(root)
    cache = StageCache(root)
    params = {"dataset": source.name, "mirror": mirror, "include_optional": include_optional,
              "media_from": _abs(media_from) if media_from else None, "raw_dir": _abs(raw_dir(root, source.name))}
    inputs: dict[str, str] = {}
    mdir = _mirror_dir(mirror, source.name)
    if mdir is not None:
        inputs["mirror"] = cache.hasher.tree(mdir)
    if media_from:
        inputs["media_from"] = cache.hasher.digest(media_from)
    synthetic = _is_synthetic_mirror(mirror)

    def work() -> dict[str, Any]:
        t = time.perf_counter()
        report = fetch_dataset(source.name, root, mirror=mirror, include_optional=include_optional,
                               progress=progress, media_from=Path(media_from) if media_from else None)
        seconds = time.perf_counter() - t
        lineage = LineageStore(root, cache.hasher)
        out = Path(report.raw_dir)
        ids, outputs = [], [str(out / MANIFEST)]
        for f in report.files:
            path = out / str(f["name"])
            cache.hasher.remember(path, str(f["sha256"]))
            rec = lineage.ensure("raw", path, sha256=str(f["sha256"]), params={"dataset": source.name,
                                 "url": f["url"], "checksum_source": f["checksum_source"]},
                                 flags={"synthetic_data": synthetic}, stage="download",
                                 code_version=code_version(*CODE["download"]), counts={"bytes": f["size"]})
            ids.append(rec.id)
            outputs.append(str(path))
        return {"dataset": source.name, "raw_dir": report.raw_dir, "files": len(report.files),
                "unpacked": report.unpacked, "manual": [asdict(m) for m in report.manual],
                "synthetic_data": synthetic, "lineage": ids, "seconds": round(seconds, 3), "outputs": outputs}

    result, _ = cached_stage(root, "download", params, inputs, work, packages=CODE["download"], force=force)
    return result


# ================================================================================================ prepare


def _raw_tree_record(lineage: LineageStore, root: Path, dataset: str, digest: str) -> LineageRecord:
    """A record of a dataset's raw folder (content = tree digest), linked to the downloaded files' records."""
    from pipelines.fetch import MANIFEST, raw_dir

    raw = raw_dir(root, dataset)
    inputs: list[LineageRecord] = []
    try:
        manifest = json.loads((raw / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {"files": []}
    for f in manifest.get("files", []):
        rec = lineage.find(raw / str(f.get("name")))
        if rec is not None:
            inputs.append(rec)
    return lineage.ensure("raw", raw, sha256=digest, inputs=inputs, stage="download",
                          params={"dataset": dataset}, counts={"files_downloaded": len(inputs)})


def run_prepare(dataset: str, root: str | os.PathLike[str] = "data", *, force: bool = False) -> dict[str, Any]:
    """``pipelines.prepare.prepare_dataset`` keyed by the content of the raw folders it reads and the code."""
    from pipelines.fetch import MANIFEST, raw_dir
    from pipelines.prepare import prepare_dataset, tables_dir
    from pipelines.sources import get_source

    name = get_source(dataset).name
    root = Path(root)
    cache = StageCache(root)
    reads = (name, *PREPARE_READS.get(name, ()))
    inputs: dict[str, str] = {}
    for d in reads:
        raw = raw_dir(root, d)
        if d == name and not raw.is_dir():
            raise FileNotFoundError(f"{raw} does not exist: run the download flow (or `vlpet download {name} "
                                    f"--root {root}`) first")
        # MANIFEST.json is the downloader's record (rewritten by every download), not something prepare reads.
        inputs[f"raw/{d}"] = cache.hasher.tree(raw, exclude=(MANIFEST,)) if raw.is_dir() else "absent"
    params = {"dataset": name, "root": _abs(root)}

    def work() -> dict[str, Any]:
        t = time.perf_counter()
        report = prepare_dataset(name, root)
        seconds = time.perf_counter() - t
        lineage = LineageStore(root, cache.hasher)
        raw_recs = [_raw_tree_record(lineage, root, d, inputs[f"raw/{d}"]) for d in reads
                    if inputs[f"raw/{d}"] != "absent"]
        out = tables_dir(root, name)
        cv = code_version(*CODE["prepare"])
        tables = {}
        for split, rows in report.tables.items():
            rec = lineage.record("table", out / f"{split}.arrow", raw_recs, {"dataset": name, "split": split},
                                 counts={"rows": rows}, stage="prepare", code_version=cv,
                                 timings={"prepare_dataset_s": seconds})
            tables[split] = {"path": _abs(out / f"{split}.arrow"), "rows": rows, "lineage": rec.id}
        media = lineage.record("media-index", out / "media.arrow", raw_recs, {"dataset": name}, stage="prepare",
                               code_version=cv, counts={"present": report.media_present,
                                                        "referenced": report.media_referenced,
                                                        "missing": report.media_missing})
        return {"dataset": name, "tables_dir": _abs(out), "tables": tables, "media_index": _abs(out / "media.arrow"),
                "media_lineage": media.id, "media_present": report.media_present,
                "media_missing": report.media_missing, "coverage": round(report.coverage, 6), "notes": report.notes,
                "seconds": round(seconds, 3), "outputs": [str(out)]}

    result, _ = cached_stage(root, "prepare", params, inputs, work, packages=CODE["prepare"], force=force)
    return result


# ================================================================================================ extract

ShardExecutor = Callable[[str, int], Sequence[Mapping[str, Any]]]  # (job file, n shards) -> per-shard counts


def _media_input(media: Path, media_root: str | None, cache: StageCache) -> dict[str, str]:
    if media.is_dir():
        return {"media": cache.hasher.tree(media)}
    if media.is_file():
        out = {"media_index": cache.hasher.file(media)}
        return out
    raise FileNotFoundError(f"media={media}: no such folder or media index")


def save_job(job: Any, path: Path) -> Path:
    """An ``ExtractionJob`` as JSON (atomic), for shard workers to load by path (small task parameters)."""
    d = asdict(job)
    return write_json_atomic(path, d, indent=None)


def load_job(path: str | os.PathLike[str]) -> Any:
    from features.engine import ExtractionJob
    from features.media import MediaItem

    d = json.loads(Path(path).read_text())
    d["items"] = [MediaItem.from_dict(i) for i in d["items"]]
    d["to_extract"] = [MediaItem.from_dict(i) for i in d["to_extract"]]
    return ExtractionJob(**d)


def run_extract(media: str | os.PathLike[str], store: str | os.PathLike[str], *, extractor: str = DEFAULT_EXTRACTOR,
                device: str = "auto", batch_size: int | None = None, workers: int | None = None,
                pretrained: str | None = None, media_root: str | None = None,
                root: str | os.PathLike[str] | None = None, shard_executor: ShardExecutor | None = None,
                shards: int | None = None, force: bool = False, progress: bool = False,
                weights: str = "official") -> dict[str, Any]:
    """Extract features of ``media`` (a folder, searched recursively, or a media index) into ``store``.

    Keyed by the media content, extractor/weights/device type/batch size, store path and ``features`` code.
    On a miss the feature store itself is incremental (only new or changed media are extracted). With
    ``shard_executor`` (the Dask path) the work is planned, run as ``shards`` shards by the executor and
    committed once; otherwise ``features.engine.extract`` runs in this process. ``weights``: ``official``
    (OpenAI's CLIP from the Hugging Face cache, downloaded on first use, or ``pretrained``) or ``random``."""
    from features.engine import commit_extraction, extract, plan_extraction, resolve_device
    from features.store import FeatureStore

    root = stage_lineage_root(store, root)
    cache = StageCache(root)
    media_p = Path(media).expanduser()
    if media_root is None and media_p.is_file() and media_p.parent.parent.name == "tables":
        # A prepared media index (<root>/tables/<dataset>/media.arrow): its paths are relative to <root>/raw.
        from pipelines.prepare import check_table_set

        check_table_set(media_p.parent)  # an interrupted prepare's set is not extracted from
        guess = media_p.parent.parent.parent / "raw"
        media_root = str(guess) if guess.is_dir() else None
    inputs = _media_input(media_p, media_root, cache)
    if pretrained and Path(pretrained).expanduser().is_file():
        inputs["pretrained"] = cache.hasher.file(Path(pretrained).expanduser())
    dev = resolve_device(device)
    params = {"media": _abs(media_p), "media_root": _abs(media_root) if media_root else None,
              "store": _abs(store), "extractor": extractor, "pretrained": pretrained, "device_type": dev.type,
              "batch_size": batch_size, "weights": weights}

    def work() -> dict[str, Any]:
        t = time.perf_counter()
        if shard_executor is None:
            rep = extract(media_p, store, extractor=extractor, device=device, batch_size=batch_size,
                          workers=workers, pretrained=pretrained, media_root=media_root, progress=progress,
                          weights=weights)
            report = rep.as_dict()
            report["shards"] = 1
        else:
            job = plan_extraction(media_p, store, extractor=extractor, pretrained=pretrained, batch_size=batch_size,
                                  media_root=media_root, device=device, weights=weights)
            n = max(1, shards or 1)
            job_file = save_job(job, vlpet_dir(root) / "jobs" / f"{job.run_id}.json")
            counts = list(shard_executor(str(job_file), n)) if job.to_extract else []
            snap_id = commit_extraction(job)
            info = FeatureStore.open(store).snapshot(snap_id)
            reader = FeatureStore.open_reader(store, snapshot=snap_id)
            report = {"store": str(store), "extractor": extractor, "device": str(dev), "snapshot": snap_id,
                      "content_digest": info.content_digest(), "random_init": bool(job.metadata.get("random_init")),
                      "items": len(job.items), "extracted": sum(int(c.get("extracted", 0)) for c in counts),
                      "reused": len(job.items) - len(job.to_extract),
                      "deleted": int(info.counts.get("deleted", 0)) if isinstance(info.counts, Mapping) else 0,
                      "quarantined": [asdict(e) for e in reader.errors()], "shards": n,
                      "model_seconds": round(sum(float(c.get("model_seconds", 0)) for c in counts), 3)}
            job_file.unlink(missing_ok=True)
        seconds = time.perf_counter() - t
        info = FeatureStore.open(store).snapshot(report["snapshot"])
        lineage = LineageStore(root, cache.hasher)
        if media_p.is_dir():
            media_rec = lineage.ensure("media-dir", media_p, sha256=inputs["media"], stage="extract-features")
        else:
            media_rec = lineage.ensure("media-index", media_p, sha256=inputs["media_index"],
                                       stage="extract-features")
        rec = lineage.record(
            "features", info.path, [media_rec], {"extractor": extractor, "pretrained": pretrained,
                                                 "weights_choice": weights, "batch_size": batch_size,
                                                 "store": _abs(store),
                                                 "weights": info.metadata.get("weights")},
            sha256=info.content_digest(), code_version=code_version(*CODE["extract-features"]),
            device=str(report["device"]),
            counts={k: report[k] for k in ("items", "extracted", "reused", "deleted", "shards")}
            | {"quarantined": len(report["quarantined"])},
            timings={"seconds": seconds, "model_seconds": report.get("model_seconds", 0.0)},
            flags={"random_init_weights": bool(report["random_init"])}, stage="extract-features",
            extra={"snapshot": report["snapshot"], "weights_identity": info.metadata.get("weights_identity")})
        return {**report, "store": _abs(store), "snapshot_dir": str(info.path), "lineage": rec.id,
                "seconds": round(seconds, 3), "outputs": [str(info.path)]}

    result, _ = cached_stage(root, "extract-features", params, inputs, work, packages=CODE["extract-features"],
                             force=force)
    return result


# ================================================================================================ build


def task_splits(task: str) -> tuple[str, ...]:
    from flows.demo import TASK_SPLITS

    if task not in TASK_SPLITS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_SPLITS)}")
    return TASK_SPLITS[task]


def run_build(task: str, store: str | os.PathLike[str], root: str | os.PathLike[str] = "data", *,
              splits: Sequence[str] | None = None, snapshot: str | None = None, dataset: str | None = None,
              force: bool = False) -> dict[str, Any]:
    """``pipelines.tasks.build_task`` per split, each keyed by its unified table's content, the snapshot id
    (``snapshot`` or the store's latest) and the code; returns ``{"task", "snapshot", "splits": {...}}``."""
    from features.store import FeatureStore
    from pipelines.tasks import build_task

    root = Path(root)
    cache = StageCache(root)
    fstore = FeatureStore.open(store)
    info = fstore.snapshot(snapshot)
    out: dict[str, Any] = {"task": task, "store": _abs(store), "snapshot": info.id, "splits": {}, "hits": 0}
    for split in splits or task_splits(task):
        table = root / "tables" / (dataset or task) / f"{split}.arrow"
        if not table.is_file():
            raise FileNotFoundError(f"{table}: no unified table for task {task!r} split {split!r}; run the "
                                    f"prepare flow for {dataset or task!r} first")
        params = {"task": task, "split": split, "dataset": dataset or task, "store": _abs(store),
                  "root": _abs(root)}
        inputs = {"table": cache.hasher.file(table), "snapshot": info.id}

        def work(split: str = split, table: Path = table) -> dict[str, Any]:
            t = time.perf_counter()
            rep = build_task(root, task, split, store, snapshot=info.id, dataset=dataset)
            seconds = time.perf_counter() - t
            lineage = LineageStore(root, cache.hasher)
            table_rec = lineage.ensure("table", table, stage="prepare", params={"dataset": dataset or task,
                                                                                 "split": split})
            feat_rec = lineage.ensure("features", info.path, sha256=info.content_digest(), stage="extract-features",
                                      flags={"random_init_weights": bool(info.metadata.get("random_init"))})
            rec = lineage.record("task-table", rep.out_path, [table_rec, feat_rec],
                                 {"task": task, "split": split, "snapshot": info.id},
                                 code_version=code_version(*CODE["build-dataset"]), stage="build-dataset",
                                 counts={"rows_in": rep.rows_in, "rows_out": rep.rows_out, "excluded": rep.excluded},
                                 timings={"seconds": seconds})
            return {"path": rep.out_path, "rows_in": rep.rows_in, "rows_out": rep.rows_out, "excluded": rep.excluded,
                    "snapshot": rep.snapshot_id, "lineage": rec.id, "seconds": round(seconds, 3),
                    "outputs": [rep.out_path, str(Path(rep.out_path).with_suffix(".report.json"))]}

        result, hit = cached_stage(root, "build-dataset", params, inputs, work, packages=CODE["build-dataset"],
                                   force=force)
        out["splits"][split] = result
        out["hits"] += int(hit)
    return out


# ================================================================================================ Dask


def dask_task_runner(cluster: str) -> Any:
    """A prefect-dask ``DaskTaskRunner`` for ``cluster`` (``local:N``, ``local-cuda``, ``tcp://host:port``)."""
    from prefect_dask import DaskTaskRunner

    if cluster.startswith("local:"):
        n = _local_workers(cluster)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    if cluster == "local-cuda":
        return DaskTaskRunner(cluster_class="dask_cuda.LocalCUDACluster", cluster_kwargs={"dashboard_address": None})
    if cluster.startswith(("tcp://", "tls://")):
        return DaskTaskRunner(address=cluster)
    raise ValueError(f"cluster={cluster!r}: use 'local:N', 'local-cuda' or 'tcp://host:port'")


def _local_workers(cluster: str) -> int:
    try:
        n = int(cluster.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"cluster={cluster!r}: 'local:N' needs a worker count N >= 1")
    return n


def default_shards(cluster: str) -> int:
    """Shards per cluster: one per worker (asks the scheduler for ``tcp://``, counts GPUs for ``local-cuda``)."""
    if cluster.startswith("local:"):
        return _local_workers(cluster)
    if cluster == "local-cuda":
        import torch

        return max(1, torch.cuda.device_count())
    from distributed import Client

    with Client(cluster, timeout=30, set_as_default=False) as client:
        return max(1, len(client.scheduler_info().get("workers", {})))


@task(name="extract-shard", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2)
def extract_shard_task(job_file: str, shard: int, n_shards: int, device: str = "auto",
                       workers: int | None = 0) -> dict[str, Any]:
    """One shard of a planned extraction, on whichever Dask worker runs it (coarse: one task per shard)."""
    import warnings

    from features.engine import run_extraction_shard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init weights warn once per worker; the snapshot records it
        return run_extraction_shard(load_job(job_file), shard, n_shards, device=device, workers=workers)


@flow(name="extract-features-shards", persist_result=False)
def extract_shards_flow(job_file: str, n_shards: int, device: str = "auto", workers: int | None = 0
                        ) -> list[dict[str, Any]]:
    """Fan the shards out on this flow's task runner (set by ``with_options(task_runner=...)``)."""
    futures = [extract_shard_task.submit(job_file, k, n_shards, device, workers) for k in range(n_shards)]
    return [f.result() for f in futures]


def dask_shard_executor(cluster: str, *, device: str = "auto", workers: int | None = 0) -> ShardExecutor:
    def execute(job_file: str, n_shards: int) -> list[dict[str, Any]]:
        sub = extract_shards_flow.with_options(task_runner=dask_task_runner(cluster))
        return sub(job_file=job_file, n_shards=n_shards, device=device, workers=workers)

    return execute


# ================================================================================================ flows


@flow(name="download", persist_result=False, log_prints=True)
def download_flow(dataset: str, root: str = "data", mirror: str | None = None, media_from: str | None = None,
                  include_optional: bool = False, force: bool = False) -> dict[str, Any]:
    """Download, verify and unpack one dataset into ``<root>/raw/<dataset>`` (cached, lineage-recorded)."""
    return run_download(dataset, root, mirror=mirror, media_from=media_from, include_optional=include_optional,
                        force=force)


@flow(name="prepare", persist_result=False, log_prints=True)
def prepare_flow(dataset: str, root: str = "data", force: bool = False) -> dict[str, Any]:
    """Unified tables and the media index of one dataset under ``<root>/tables/<dataset>``."""
    return run_prepare(dataset, root, force=force)


@flow(name="extract-features", persist_result=False, log_prints=True)
def extract_features_flow(media: str, store: str, extractor: str = DEFAULT_EXTRACTOR, device: str = "auto",
                          cluster: str | None = None, batch_size: int | None = None, workers: int | None = None,
                          pretrained: str | None = None, media_root: str | None = None, root: str | None = None,
                          shards: int | None = None, force: bool = False,
                          weights: Literal["official", "random"] = "official") -> dict[str, Any]:
    """Features of every image/video under ``media`` into the store ``store`` (incremental; one snapshot).

    ``weights``: ``official`` (OpenAI's CLIP, downloaded into the Hugging Face cache on first use; or
    ``pretrained``: a file or an open_clip tag) or ``random`` (random init, recorded in the store and lineage).

    ``cluster``: None (this process), ``local:N``, ``local-cuda`` or ``tcp://host:port`` (Dask, one task per
    shard; ``shards`` defaults to the number of workers)."""
    executor = None
    if cluster:
        dask_task_runner(cluster)  # validate early, with a clear error
        shards = shards or default_shards(cluster)
        executor = dask_shard_executor(cluster, device=device, workers=0 if workers is None else workers)
    # Forked DataLoader workers are safe here: flows.forksafe drops Prefect's at-exit hooks in forked children.
    return run_extract(media, store, extractor=extractor, device=device, batch_size=batch_size,
                       workers=workers, pretrained=pretrained, media_root=media_root, root=root,
                       shard_executor=executor, shards=shards, force=force, weights=weights)


@flow(name="build-dataset", persist_result=False, log_prints=True)
def build_dataset_flow(task: str, store: str, root: str = "data", splits: list[str] | None = None,
                       snapshot: str | None = None, dataset: str | None = None,
                       force: bool = False) -> dict[str, Any]:
    """Task tables of ``task`` (every split of the paper unless ``splits``) joined to a store snapshot."""
    return run_build(task, store, root, splits=splits, snapshot=snapshot, dataset=dataset, force=force)


# ------------------------------------------------------------------------------------------------ train/evaluate
# ``train``, ``evaluate`` and ``end-to-end`` live in ``flows.model_flows`` (they reuse ``cached_stage`` above).
from flows.model_flows import end_to_end_flow, evaluate_flow, train_flow  # noqa: E402 (needs the helpers above)

FLOWS: list[Any] = [download_flow, prepare_flow, extract_features_flow, build_dataset_flow, train_flow,
                    evaluate_flow, end_to_end_flow]
