"""The pipeline's Prefect flows: each stage a task, flows compose tasks. The work, cache and lineage are the
stages' (``flows.stages``, Prefect-free, also run by the CLI); this module only adds Prefect: tasks, graphs,
logs and artifacts (``flows.observe``), Dask (``flows.dask_shards``).

Flows (their names are the interface; ``vlpet serve`` serves each as the deployment ``<name>/default``):
``download``, ``prepare``, ``extract-features``, ``build-dataset``, ``train``, ``evaluate`` and ``end-to-end``
(every stage of the demo as a graph of tasks: independent branches, e.g. image and video extraction, run
concurrently). Cache and lineage live under the data root (``<root>/.vlpet/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow

from flows import observe
from flows.end_to_end import end_to_end_flow
from flows.stage_tasks import (
    build_task,
    download_task,
    evaluate_task,
    extract_task,
    finish,
    prepare_task,
    train_task,
)
from flows.stages import DOWNLOAD, EXTRACT
from flows.stages.extract import DEFAULT_EXTRACTOR

Dataset = Literal["coco", "vqa", "gqa", "nlvr2", "tvqa", "how2qa", "tvc", "yc2c"]
TaskName = Literal["vqa", "gqa", "nlvr2", "coco", "tvqa", "how2qa", "tvc", "yc2c"]
Extractor = Literal["clip-rn101-grid", "clip-vit-b32-grid", "clip-vit-b16-grid", "clip-vit-b32-video"]
Device = Literal["auto", "cpu", "cuda"]
Weights = Literal["official", "random"]


# ================================================================================================ flows


@flow(name="download", persist_result=False, log_prints=True)
def download_flow(dataset: Dataset, root: str = "data", mirror: str | None = None, media_from: str | None = None,
                  include_optional: bool = False, force: bool = False) -> dict[str, Any]:
    """Download, verify and unpack one dataset into <root>/raw/<dataset> (cached, lineage-recorded).

    Args:
        dataset: the dataset to download
        root: the data root (raw files go to ROOT/raw/DATASET; cache and lineage to ROOT/.vlpet)
        mirror: a global mirror: files come from MIRROR/DATASET/NAME (file:// works)
        media_from: a folder with the media that cannot be downloaded (images/, videos/)
        include_optional: also fetch optional files (test-server splits, shortcuts)
        force: run even when the stage cache holds a valid result
    """
    params = {"dataset": dataset, "root": root, "mirror": mirror, "media_from": media_from,
              "include_optional": include_optional}
    result = download_task.submit(params, options={"force": force}).result()
    finish(f"download-{dataset}", f"download of {dataset}", str(DOWNLOAD.Params.model_validate(params).root),
           [(f"download {dataset}", result)])
    return result


@flow(name="prepare", persist_result=False, log_prints=True)
def prepare_flow(dataset: Dataset, root: str = "data", force: bool = False) -> dict[str, Any]:
    """Unified tables and the media index of one dataset under <root>/tables/<dataset>.

    Args:
        dataset: the downloaded dataset to parse
        root: the data root (ROOT/raw/DATASET -> ROOT/tables/DATASET)
        force: run even when the stage cache holds a valid result
    """
    result = prepare_task.submit({"dataset": dataset, "root": root}, options={"force": force}).result()
    finish(f"prepare-{dataset}", f"prepare of {dataset}", str(Path(root).resolve()),
            [(f"prepare {dataset}", result)])
    return result


@flow(name="extract-features", persist_result=False, log_prints=True)
def extract_features_flow(media: str, store: str, extractor: Extractor = DEFAULT_EXTRACTOR, device: Device = "auto",
                          cluster: str | None = None, batch_size: int | None = None, workers: int | None = None,
                          pretrained: str | None = None, media_root: str | None = None, root: str | None = None,
                          shards: int | None = None, device_decode: bool = False,
                          force: bool = False, weights: Weights = "official") -> dict[str, Any]:
    """Features of every image/video under media into the store (incremental; one snapshot; Dask optional).

    Args:
        media: a folder of images/videos (searched recursively) or a prepared media index (.arrow)
        store: the feature store (created when missing)
        extractor: the CLIP feature extractor
        device: where the model runs (auto: a GPU when there is one)
        cluster: Dask scale-out: local:N, local-cuda or tcp://host:port (empty: this process)
        batch_size: media per forward (default: 8 on CPU, 128 on GPU; videos 2 / 4)
        workers: decoding processes (default: one per spare core)
        pretrained: other weights than OpenAI's: a local weights file, or an open_clip tag (downloaded from the
            Hugging Face hub on first use)
        media_root: with a media index: the folder its rel_paths are relative to
        root: the data root for cache and lineage (default: $VLPET_DATA_ROOT, else the store's parent)
        shards: Dask shards (default: one per worker)
        device_decode: decode JPEGs in batches on the device (a separate store spec)
        force: run even when the stage cache holds a valid result
        weights: official (OpenAI's CLIP, or pretrained; downloaded into the Hugging Face cache on first use) or
            random (random init, recorded in the store and the lineage)
    """
    options: dict[str, Any] = {"force": force}
    if cluster:
        from flows.dask_shards import dask_shard_executor, dask_task_runner, default_shards

        dask_task_runner(cluster)  # validate early, with a clear error
        options.update(shards=shards or default_shards(cluster),
                       shard_executor=dask_shard_executor(cluster, device=device,
                                                          workers=0 if workers is None else workers))
    params = {"media": media, "store": store, "extractor": extractor, "device": device, "batch_size": batch_size,
              "workers": workers, "pretrained": pretrained, "media_root": media_root, "root": root,
              "device_decode": device_decode, "weights": weights}
    # Forked DataLoader workers are safe here: flows.forksafe drops Prefect's at-exit hooks in forked children.
    result = extract_task.submit(params, options=options).result()
    name = Path(store).name
    finish(f"extract-features-{name}", f"features of {name}", str(EXTRACT.Params.model_validate(params).root),
            [(f"extract {name}", result)])
    return result


@flow(name="build-dataset", persist_result=False, log_prints=True)
def build_dataset_flow(task: TaskName, store: str, root: str = "data", splits: list[str] | None = None,
                       snapshot: str | None = None, dataset: str | None = None,
                       force: bool = False) -> dict[str, Any]:
    """Task tables of a task joined to a feature-store snapshot.

    Args:
        task: the task whose tables to build
        store: the feature store holding the task's media features
        root: the data root (ROOT/tables/DATASET -> ROOT/tasks/TASK)
        splits: the splits to build (default: every split of the paper)
        snapshot: the store snapshot (default: the latest)
        dataset: the prepared dataset (default: the task's name)
        force: run even when the stage cache holds a valid result
    """
    params = {"task": task, "store": store, "root": root, "splits": splits, "snapshot": snapshot,
              "dataset": dataset}
    result = build_task.submit(params, options={"force": force}).result()
    finish(f"build-dataset-{task}", f"task tables of {task}", str(Path(root).resolve()), [(f"build {task}", result)])
    return result


@flow(name="train", persist_result=False, log_prints=True)
def train_flow(out: str, preset: str | None = "synthetic-image", config: str | None = None, root: str = "data",
               tasks_dir: str | None = None, overrides: dict[str, Any] | None = None, device: Device = "auto",
               force: bool = False, weights: Weights | None = None) -> dict[str, Any]:
    """Train a preset (or a JSON config) on the task tables into a run directory (cached, resumable).

    Args:
        out: the run directory
        preset: a training preset (see `vlpet presets`); ignored when config is given
        config: a JSON training config file instead of a preset
        root: the data root (task tables under ROOT/tasks unless tasks_dir)
        tasks_dir: the task tables directory (default: ROOT/tasks)
        overrides: config fields to override, e.g. {"epochs": 2}
        device: where training runs
        force: run even when the stage cache holds a valid result
        weights: official (the backbone's public checkpoint, downloaded into the Hugging Face cache on first use)
            or random (random init of the backbone); empty: the config's (official by default)
    """
    from flows.runs import load_train_config

    cfg = load_train_config(None if config else preset, config,
                            {**(overrides or {}), **({"weights": weights} if weights is not None else {})})
    params = {"config": cfg.model_dump(mode="json"), "out": out, "root": root, "tasks_dir": tasks_dir,
              "device": device}
    result = train_task.submit(params, options={"force": force}).result()
    finish(f"train-{cfg.name}", f"training of {cfg.name}", str(Path(root).resolve()), [(f"train {cfg.name}", result)])
    return result


@flow(name="evaluate", persist_result=False, log_prints=True)
def evaluate_flow(run_dir: str, root: str = "data", split: str = "test", tasks_dir: str | None = None,
                  device: Device = "auto", force: bool = False) -> dict[str, Any]:
    """Evaluate a training run against the majority baseline; metrics, predictions, a report.

    Args:
        run_dir: a finished training run directory
        root: the data root (cache and lineage)
        split: test, val, or a split name
        tasks_dir: the task tables directory (default: the one the run trained on)
        device: where evaluation runs
        force: run even when the stage cache holds a valid result
    """
    params = {"run_dir": run_dir, "root": root, "split": split, "tasks_dir": tasks_dir, "device": device}
    result = evaluate_task.submit(params, options={"force": force}).result()
    name = Path(run_dir).name
    observe.publish_metrics(f"evaluate-{name}", result["tasks"], f"evaluation of {name} on {split}")
    observe.publish_report(f"evaluate-{name}", Path(result["report"]).read_text(), f"evaluation report of {name}")
    finish(f"evaluate-{name}", f"evaluation of {name}", str(Path(root).resolve()), [(f"evaluate {name}", result)])
    return result


FLOWS: list[Any] = [download_flow, prepare_flow, extract_features_flow, build_dataset_flow, train_flow,
                    evaluate_flow, end_to_end_flow]
# What tells the deployments apart on the deployments page besides their flow's name and description.
TAGS: dict[str, list[str]] = {
    "download": ["vlpet", "data", "stage:download"], "prepare": ["vlpet", "data", "stage:prepare"],
    "extract-features": ["vlpet", "features", "stage:extract", "gpu"],
    "build-dataset": ["vlpet", "data", "stage:build"], "train": ["vlpet", "model", "stage:train", "gpu"],
    "evaluate": ["vlpet", "model", "stage:evaluate"], "end-to-end": ["vlpet", "pipeline", "demo"]}
