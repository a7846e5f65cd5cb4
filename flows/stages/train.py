"""The ``train`` stage: ``flows.runs.train_run`` of one training config on task tables into a run directory.

Keyed by the content of its task tables (which name their feature snapshot), the whole training config, a
local backbone directory's files and the code of ``vlpet`` and ``pipelines``; a hit returns the recorded
result without building a model. Records the selected model (kind ``checkpoint``) linked to the task tables
it trained on and a local backbone directory, flagged ``random_init_weights`` for a random or vlpet-denoised
backbone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import model_validator

from flows.caching import FileHasher, vlpet_dir
from flows.lineage import LineageRecord, LineageStore
from flows.stages.core import (
    AbsPath,
    Artifact,
    Ref,
    Stage,
    StageContext,
    StageOutput,
    StageParams,
    abspath,
    execute,
    resolve_refs,
)

CODE_TRAIN = ("vlpet", "pipelines")  # the model library and the loader that feeds it


class TrainParams(StageParams):
    config: dict[str, Any]  # a whole TrainConfig (validated), e.g. ``load_train_config(...).model_dump()``
    out: AbsPath
    root: AbsPath | None = None  # default: $VLPET_DATA_ROOT, else the parent of tasks_dir, else "data"
    tasks_dir: AbsPath | None = None  # default: <root>/tasks
    device: str = "auto"

    @model_validator(mode="after")
    def _complete(self) -> TrainParams:
        from vlpet.train import TrainConfig

        object.__setattr__(self, "config", TrainConfig.model_validate(self.config).model_dump(mode="json"))
        root = default_root(self.root, self.tasks_dir)
        object.__setattr__(self, "root", root)
        if self.tasks_dir is None:
            object.__setattr__(self, "tasks_dir", str(Path(root) / "tasks"))
        return self

    def train_config(self) -> Any:
        from vlpet.train import TrainConfig

        return TrainConfig.model_validate(self.config)


def default_root(root: str | None, tasks_dir: str | os.PathLike[str] | None) -> str:
    """The data root of a run: ``root``, else ``$VLPET_DATA_ROOT``, else the parent of its task tables
    (``<root>/tasks``), else ``data``."""
    if root:
        return str(abspath(root))
    if os.environ.get("VLPET_DATA_ROOT"):
        return str(abspath(os.environ["VLPET_DATA_ROOT"]))
    return str(abspath(Path(tasks_dir).parent if tasks_dir else "data"))


def table_inputs(tasks_dir: Path, cfg: Any, which: str) -> dict[str, Path]:
    """``{"task/split": path}`` of the tables a run trains on (``train``) or is evaluated on (``val``/``test``)."""
    from flows.runs import eval_split, table_path

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


def table_refs(tables: dict[str, Path]) -> list[Ref]:
    return [Ref("task-table", p, stage="build") for p in tables.values()]


def train_input_refs(tables: dict[str, Path], backbone: str) -> list[Ref]:
    """The lineage inputs of a checkpoint: its task tables, and a local backbone directory (by its tree digest)."""
    refs = table_refs(tables)
    directory = Path(backbone).expanduser()
    if directory.is_dir():
        from vlpet.pretrain import pretraining_record

        refs.append(Ref("backbone", directory, stage="external", params={"name": backbone},
                        flags={"random_init_weights": pretraining_record(backbone) is not None}))
    return refs


def train_input_records(lineage: LineageStore, tables: dict[str, Path], backbone: str) -> list[LineageRecord]:
    """``train_input_refs`` resolved to lineage records (what the executor links a checkpoint to)."""
    return resolve_refs(lineage, train_input_refs(tables, backbone))


class Train(Stage[TrainParams]):
    name = "train"
    Params = TrainParams
    packages = CODE_TRAIN
    unkeyed = frozenset({"root", "tasks_dir"})

    def inputs(self, params: TrainParams, hasher: FileHasher) -> dict[str, str]:
        cfg = params.train_config()
        files = {**table_inputs(Path(str(params.tasks_dir)), cfg, "train"), **backbone_inputs(cfg.backbone)}
        return {name: hasher.file(p) for name, p in files.items()}

    def run(self, params: TrainParams, ctx: StageContext) -> StageOutput:
        from flows.runs import train_run

        cfg = params.train_config()
        tasks = Path(str(params.tasks_dir))
        # A miss means the inputs changed: an older run in ``out`` is moved aside (kept) unless the caller
        # asks for an error instead (``replace=False``, the CLI's default).
        result = train_run(cfg, tasks, params.out, device=params.device, progress=ctx.option("progress", False),
                           data_notes=ctx.option("data_notes"), replace=ctx.option("replace", True),
                           backbone_cache=vlpet_dir(str(params.root)) / "cache" / "backbones")
        train, conf = result["train"], result["config"]
        model_dir = Path(train["model_dir"])
        counts = {"steps": train["steps"], "samples": train["samples"],
                  "trainable_params": conf["trainable_params"], "total_params": conf["total_params"]}
        checkpoint = Artifact(
            "checkpoint", "checkpoint", model_dir, train_input_refs(table_inputs(tasks, cfg, "train"), cfg.backbone),
            {"preset": cfg.name, "method": cfg.method, "backbone": cfg.backbone, "lr": cfg.lr, "epochs": cfg.epochs,
             "batch_size": cfg.batch_size, "seed": cfg.seed, "weights": cfg.weights}, device=train["device"],
            counts=counts,
            flags={"random_init_weights": bool(conf["random_init_backbone"])},
            extra={"backbone": conf["backbone"], "backbone_pretraining": conf["backbone_pretraining"],
                   "loss_first": train["loss_first"], "loss_last": train["loss_last"]})
        out = {"run_dir": params.out, "model_dir": str(model_dir), "preset": cfg.name, "steps": train["steps"],
               "loss_first": train["loss_first"], "loss_last": train["loss_last"], "device": train["device"],
               "backbone": conf["backbone"], "train": train, "skipped": result["skipped"]}
        return StageOutput(out, [str(model_dir)], [checkpoint], counts={"steps": train["steps"]}, main="checkpoint")


TRAIN = Train()


def run_train(cfg: Any, root: str | os.PathLike[str] | None, out: str | os.PathLike[str], *,
              tasks_dir: str | os.PathLike[str] | None = None, device: str = "auto", force: bool = False,
              **options: Any) -> dict[str, Any]:
    """The ``train`` stage through the executor (``options``: progress, data_notes, replace, record)."""
    params = {"config": cfg.model_dump(mode="json"), "out": str(out), "root": None if root is None else str(root),
              "tasks_dir": None if tasks_dir is None else str(tasks_dir), "device": device}
    return execute(TRAIN, params, force=force, **options)
