"""The ``extract`` stage: features of every image/video under ``media`` into a feature store (``features``).

Keyed by the media content (a folder's tree digest or a media index's hash), the extractor, the weights choice
(official or random) and weights file,
device type, batch size, store path and the ``features`` code. On a miss the store itself is incremental: only
new or changed media are extracted. Run in this process (``features.engine.extract``) or, with the run option
``shard_executor`` (the Dask path of ``flows.dask_shards``), planned, run as shards elsewhere and committed
once. Records the snapshot (kind ``features``, flagged ``random_init_weights`` with ``weights="random"``)
linked to the media it read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from flows.caching import FileHasher, vlpet_dir, write_json_atomic
from flows.stages.core import AbsPath, Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute

DEFAULT_EXTRACTOR = "clip-rn101-grid"
ShardExecutor = Callable[[str, int], Sequence[Mapping[str, Any]]]  # (job file, n shards) -> per-shard counts


def data_root_for(store: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    """The data root of a stage given only a store path: ``root``, ``$VLPET_DATA_ROOT``, or the store's parent."""
    if root:
        return Path(root).expanduser().resolve()
    if os.environ.get("VLPET_DATA_ROOT"):
        return Path(os.environ["VLPET_DATA_ROOT"]).expanduser().resolve()
    return Path(store).expanduser().resolve().parent


class ExtractParams(StageParams):
    media: AbsPath
    store: AbsPath
    extractor: str = DEFAULT_EXTRACTOR
    device: str = "auto"
    batch_size: int | None = None
    workers: int | None = None
    pretrained: str | None = None
    media_root: AbsPath | None = None
    device_decode: bool = False
    root: AbsPath | None = None
    # official: OpenAI's CLIP (or ``pretrained``), downloaded into the Hugging Face cache on first use; random:
    # random init, only when asked for by name (recorded in the store and the lineage)
    weights: Literal["official", "random"] = "official"

    @model_validator(mode="after")
    def _defaults(self) -> ExtractParams:
        # Fixed here, so the CLI and the flows give the same parameters (and key) for the same call.
        media = Path(self.media)
        if self.media_root is None and media.is_file() and media.parent.parent.name == "tables":
            # A prepared media index (<root>/tables/<dataset>/media.arrow): its paths are relative to <root>/raw.
            from pipelines.prepare import check_table_set

            check_table_set(media.parent)  # an interrupted prepare's set is not extracted from
            guess = media.parent.parent.parent / "raw"
            if guess.is_dir():
                object.__setattr__(self, "media_root", str(guess))
        object.__setattr__(self, "root", str(data_root_for(self.store, self.root)))
        return self


class Extract(Stage[ExtractParams]):
    name = "extract"
    Params = ExtractParams
    packages = ("features",)
    unkeyed = frozenset({"workers", "device", "root"})

    def key_params(self, params: ExtractParams) -> dict[str, Any]:
        from features.engine import resolve_device

        return {**super().key_params(params), "device_type": resolve_device(params.device).type}

    def inputs(self, params: ExtractParams, hasher: FileHasher) -> dict[str, str]:
        media = Path(params.media)
        if media.is_dir():
            inputs = {"media": hasher.tree(media)}
        elif media.is_file():
            inputs = {"media_index": hasher.file(media)}
        else:
            raise FileNotFoundError(f"media={media}: no such folder or media index")
        if params.pretrained and Path(params.pretrained).expanduser().is_file():
            inputs["pretrained"] = hasher.file(Path(params.pretrained).expanduser())
        return inputs

    def run(self, params: ExtractParams, ctx: StageContext) -> StageOutput:
        from features.store import FeatureStore

        executor: ShardExecutor | None = ctx.option("shard_executor")
        report = _sharded(params, ctx, executor) if executor else _in_process(params, ctx)
        info = FeatureStore.open(params.store).snapshot(report["snapshot"])
        media = Path(params.media)
        media_ref = (Ref("media-dir", media, sha256=ctx.inputs["media"], stage=self.name) if media.is_dir() else
                     Ref("media-index", media, sha256=ctx.inputs["media_index"], stage=self.name))
        counts = {k: report[k] for k in ("items", "extracted", "reused", "deleted", "shards")}
        counts["quarantined"] = len(report["quarantined"])
        snapshot = Artifact(
            "features", "features", info.path, [media_ref],
            {"extractor": params.extractor, "pretrained": params.pretrained, "weights_choice": params.weights,
             "batch_size": params.batch_size, "store": params.store, "weights": info.metadata.get("weights")},
            sha256=info.content_digest(), device=str(report["device"]), counts=counts,
            timings={"model_seconds": report.get("model_seconds", 0.0)},
            flags={"random_init_weights": bool(report["random_init"])},
            extra={"snapshot": report["snapshot"], "weights_identity": info.metadata.get("weights_identity")})
        result = {**report, "store": params.store, "snapshot_dir": str(info.path)}
        return StageOutput(result, [str(info.path)], [snapshot], counts=counts, main="features")


def _in_process(params: ExtractParams, ctx: StageContext) -> dict[str, Any]:
    from features import engine  # looked up at call time: tests spy on engine.extract

    rep = engine.extract(params.media, params.store, extractor=params.extractor, device=params.device,
                         batch_size=params.batch_size, workers=params.workers, pretrained=params.pretrained,
                         media_root=params.media_root, progress=ctx.option("progress", False),
                         device_decode=params.device_decode, wait=ctx.option("wait", True),
                         on_wait=ctx.option("on_wait"), weights=params.weights)
    return {**rep.as_dict(), "shards": 1}


def save_job(job: Any, path: Path) -> Path:
    """An ``ExtractionJob`` as JSON (atomic), for shard workers to load by path (small task parameters)."""
    return write_json_atomic(path, asdict(job), indent=None)


def load_job(path: str | os.PathLike[str]) -> Any:
    from features.engine import ExtractionJob
    from features.media import MediaItem

    d = json.loads(Path(path).read_text())
    d["items"] = [MediaItem.from_dict(i) for i in d["items"]]
    d["to_extract"] = [MediaItem.from_dict(i) for i in d["to_extract"]]
    return ExtractionJob(**d)


def _sharded(params: ExtractParams, ctx: StageContext, executor: ShardExecutor) -> dict[str, Any]:
    """Plan once, run ``shards`` shards through ``executor`` (e.g. Dask workers), commit one snapshot."""
    from features.engine import commit_extraction, plan_extraction, resolve_device
    from features.store import FeatureStore

    if params.device_decode:
        raise ValueError("device_decode runs in one process only; drop the cluster option or device_decode")
    with plan_extraction(params.media, params.store, extractor=params.extractor, pretrained=params.pretrained,
                         batch_size=params.batch_size, media_root=params.media_root, device=params.device,
                         weights=params.weights, wait=ctx.option("wait", True), on_wait=ctx.option("on_wait")) as job:
        n = max(1, ctx.option("shards") or 1)
        job_file = save_job(job, vlpet_dir(ctx.root) / "jobs" / f"{job.run_id}.json")
        counts = list(executor(str(job_file), n)) if job.to_extract else []
        snap_id = commit_extraction(job)
    info = FeatureStore.open(params.store).snapshot(snap_id)
    reader = FeatureStore.open_reader(params.store, snapshot=snap_id)
    job_file.unlink(missing_ok=True)
    return {"store": params.store, "extractor": params.extractor, "device": str(resolve_device(params.device)),
            "snapshot": snap_id, "content_digest": info.content_digest(),
            "random_init": bool(job.metadata.get("random_init")), "items": len(job.items),
            "extracted": sum(int(c.get("extracted", 0)) for c in counts),
            "reused": len(job.items) - len(job.to_extract),
            "deleted": int(info.counts.get("deleted", 0)) if isinstance(info.counts, Mapping) else 0,
            "quarantined": [asdict(e) for e in reader.errors()], "shards": n,
            "model_seconds": round(sum(float(c.get("model_seconds", 0)) for c in counts), 3)}


EXTRACT = Extract()


def run_extract(media: str | os.PathLike[str], store: str | os.PathLike[str], *, force: bool = False,
                progress: bool = False, shard_executor: ShardExecutor | None = None, shards: int | None = None,
                wait: bool = True, on_wait: Callable[[str], None] | None = None, **params: Any) -> dict[str, Any]:
    """The ``extract`` stage through the executor (``ExtractParams`` fields as keywords; ``wait``/``on_wait``:
    what to do when another extraction holds the store's writer lock)."""
    params = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in params.items()}
    return execute(EXTRACT, {"media": str(media), "store": str(store), **params}, force=force, progress=progress,
                   shard_executor=shard_executor, shards=shards, wait=wait, on_wait=on_wait)
