"""The ``train`` and ``evaluate`` stages and flows: cached by content, recorded in the lineage.

``run_train`` keys a run by the content of its task tables (which name their feature snapshot), the whole
training config and the code of ``vlpet``; a hit returns the recorded result without building a model.
``run_evaluate`` keys an evaluation by the selected model's content, the evaluated tables and the code.
Both record lineage: the checkpoint's inputs are the task tables it trained on (hence, transitively, the
feature snapshots, unified tables and raw files), the metrics' inputs are the checkpoint and the test tables.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow

from flows.caching import StageCache, code_version
from flows.lineage import LineageStore
from flows.runs import eval_split, evaluate_run, load_train_config, table_path, train_run
from vlpet.train import TrainConfig

CODE_TRAIN = ("vlpet", "pipelines")  # the model library and the loader that feeds it


def _table_inputs(tasks_dir: Path, cfg: TrainConfig, which: str) -> dict[str, Path]:
    tables: dict[str, Path] = {}
    for task in cfg.tasks:
        splits = cfg.train_splits[task] if which == "train" else [eval_split(cfg, task, which)]
        for split in splits:
            tables[f"{task}/{split}"] = table_path(tasks_dir, task, split)
    return tables


def backbone_inputs(backbone: str) -> dict[str, Path]:
    """Every file of a local backbone directory (weights, config, tokenizer), so that new weights under the same
    path retrain; a hub name (read from the local HF cache at a pinned revision) has none."""
    directory = Path(backbone).expanduser()
    if not directory.is_dir():
        return {}
    return {f"backbone/{f.relative_to(directory)}": f for f in sorted(directory.rglob("*")) if f.is_file()}


def _table_records(lineage: LineageStore, tables: dict[str, Path]) -> list[Any]:
    return [lineage.ensure("task-table", p, stage="build-dataset") for p in tables.values()]


def train_input_records(lineage: LineageStore, tables: dict[str, Path], backbone: str) -> list[Any]:
    """The lineage inputs of a checkpoint: its task tables, and a local backbone directory (by its tree digest)."""
    records = _table_records(lineage, tables)
    directory = Path(backbone).expanduser()
    if directory.is_dir():
        from vlpet.pretrain import pretraining_record

        records.append(lineage.ensure("backbone", directory, stage="external",
                                      params={"name": backbone},
                                      flags={"random_init_weights": pretraining_record(backbone) is not None}))
    return records


def run_train(cfg: TrainConfig, root: str | os.PathLike[str], out: str | os.PathLike[str], *,
              tasks_dir: str | os.PathLike[str] | None = None, device: str = "auto", progress: bool = False,
              data_notes: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Train ``cfg`` on ``<root>/tasks`` (or ``tasks_dir``) into ``out``; cached and lineage-recorded."""
    root = Path(root)
    tasks = Path(tasks_dir) if tasks_dir else root / "tasks"
    cache = StageCache(root)
    tables = _table_inputs(tasks, cfg, "train")
    params = {"config": cfg.model_dump(mode="json"), "out": str(Path(out).resolve()), "device": device}
    inputs = {name: cache.hasher.file(p) for name, p in {**tables, **backbone_inputs(cfg.backbone)}.items()}

    def work() -> dict[str, Any]:
        t = time.perf_counter()
        # A miss means the inputs changed: an older run in ``out`` is moved aside (kept), never reused.
        result = train_run(cfg, tasks, out, device=device, progress=progress, data_notes=data_notes, replace=True)
        seconds = time.perf_counter() - t
        model_dir = Path(result["train"]["model_dir"])
        conf = result["config"]
        lineage = LineageStore(root, cache.hasher)
        rec = lineage.record(
            "checkpoint", model_dir, train_input_records(lineage, tables, cfg.backbone),
            {"preset": cfg.name, "method": cfg.method, "backbone": cfg.backbone, "lr": cfg.lr,
             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "seed": cfg.seed, "weights": cfg.weights},
            code_version=code_version(*CODE_TRAIN), device=result["train"]["device"], stage="train",
            counts={"steps": result["train"]["steps"], "samples": result["train"]["samples"],
                    "trainable_params": conf["trainable_params"], "total_params": conf["total_params"]},
            timings={"seconds": seconds},
            flags={"random_init_weights": bool(conf["random_init_backbone"])},
            extra={"backbone": conf["backbone"], "backbone_pretraining": conf["backbone_pretraining"],
                   "loss_first": result["train"]["loss_first"], "loss_last": result["train"]["loss_last"]})
        return {"run_dir": str(Path(out).resolve()), "model_dir": str(model_dir), "lineage": rec.id,
                "backbone": conf["backbone"],
                "steps": result["train"]["steps"], "seconds": round(seconds, 2),
                "loss_first": result["train"]["loss_first"], "loss_last": result["train"]["loss_last"],
                "outputs": [str(model_dir)]}

    from flows.prefect_flows import cached_stage

    result, _ = cached_stage(root, "train", params, inputs, work, packages=CODE_TRAIN, force=force)
    return result


def run_evaluate(run_dir: str | os.PathLike[str], root: str | os.PathLike[str], split: str = "test", *,
                 tasks_dir: str | os.PathLike[str] | None = None, device: str = "auto", progress: bool = False,
                 force: bool = False) -> dict[str, Any]:
    """Evaluate a trained run on ``split`` (metrics.json, predictions, report); cached and lineage-recorded."""
    import json

    from flows.runs import CONFIG_FILE

    root, run_dir = Path(root), Path(run_dir)
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    cfg = TrainConfig.model_validate(saved["train"])
    tasks = Path(tasks_dir or saved["tasks_dir"])
    cache = StageCache(root)
    tables = _table_inputs(tasks, cfg, split)
    train_tables = _table_inputs(tasks, cfg, "train")  # the majority baseline reads them
    params = {"run_dir": str(run_dir.resolve()), "split": split, "device": device}
    inputs = {"model": cache.hasher.digest(run_dir / "model"),
              **{f"eval:{k}": cache.hasher.file(p) for k, p in tables.items()},
              **{f"train:{k}": cache.hasher.file(p) for k, p in train_tables.items()}}

    def work() -> dict[str, Any]:
        t = time.perf_counter()
        metrics = evaluate_run(run_dir, split, tasks_dir=tasks, device=device, progress=progress)
        seconds = time.perf_counter() - t
        lineage = LineageStore(root, cache.hasher)
        ckpt = lineage.ensure("checkpoint", run_dir / "model", stage="train")
        rec = lineage.record(
            "metrics", run_dir / "metrics.json", [ckpt, *_table_records(lineage, tables)],
            {"split": split, "tasks": cfg.tasks}, code_version=code_version(*CODE_TRAIN), device=metrics["device"],
            stage="evaluate", counts={t: m.get("n", 0) for t, m in metrics["tasks"].items()},
            timings={"seconds": seconds},
            extra={"scores": {t: {"metric": m["metric"], "score": m.get("score"),
                                  "majority_baseline": m["majority_baseline"].get("score")}
                              for t, m in metrics["tasks"].items()}})
        return {"run_dir": str(run_dir.resolve()), "metrics_path": str(run_dir / "metrics.json"),
                "report": str(run_dir / "report.md"), "lineage": rec.id, "tasks": metrics["tasks"],
                "notes": metrics["notes"], "seconds": round(seconds, 2),
                "outputs": [str(run_dir / "metrics.json"), str(run_dir / "report.md")]}

    from flows.prefect_flows import cached_stage

    result, _ = cached_stage(root, "evaluate", params, inputs, work, packages=CODE_TRAIN, force=force)
    return result


@flow(name="train", persist_result=False, log_prints=True)
def train_flow(out: str, preset: str | None = "synthetic-image", config: str | None = None, root: str = "data",
               tasks_dir: str | None = None, overrides: dict[str, Any] | None = None, device: str = "auto",
               force: bool = False, weights: Literal["official", "random"] | None = None) -> dict[str, Any]:
    """Train a preset (or a JSON config) on the task tables of ``root`` into the run directory ``out``.

    ``weights`` (None: the config's, ``official`` by default): ``official`` trains from the backbone's public
    checkpoint (downloaded into the Hugging Face cache on first use), ``random`` from random init."""
    cfg = load_train_config(None if config else preset, config,
                            {**(overrides or {}), **({"weights": weights} if weights is not None else {})})
    return run_train(cfg, root, out, tasks_dir=tasks_dir, device=device, force=force)


@flow(name="evaluate", persist_result=False, log_prints=True)
def evaluate_flow(run_dir: str, root: str = "data", split: str = "test", tasks_dir: str | None = None,
                  device: str = "auto", force: bool = False) -> dict[str, Any]:
    """Evaluate a training run: metrics per task against the majority baseline, predictions, a report."""
    return run_evaluate(run_dir, root, split, tasks_dir=tasks_dir, device=device, force=force)


@flow(name="end-to-end", persist_result=False, log_prints=True)
def end_to_end_flow(workdir: str = "demo-output", scale: str = "demo", seed: int = 0, device: str = "auto",
                    train_overrides: dict[str, Any] | None = None, backbone: str | None = None,
                    weights: Literal["official", "random"] = "official") -> dict[str, Any]:
    """Synthetic raw media → download → prepare → features → task tables → train → evaluate → report.

    ``weights``: ``official`` (OpenAI's CLIP and a pretrained bart-base, downloaded on first use) or ``random``
    (random CLIP and the tiny-bart denoised on the synthetic text: offline and fast)."""
    from flows.demo import run_end_to_end

    return run_end_to_end(workdir, scale=scale, seed=seed, device=device, train_overrides=train_overrides,
                          backbone=backbone, weights=weights)
