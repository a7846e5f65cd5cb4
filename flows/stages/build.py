"""The ``build`` stage: one task table (``pipelines.tasks.build_task``), a unified table joined to a feature
store snapshot, for one (task, split).

Keyed by the unified table's content, the snapshot id (``snapshot`` or the store's latest) and the code.
Records the task table linked to the unified table and the snapshot. ``run_build`` builds several splits
(default: every split of the paper's task), one cached stage run each.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.caching import FileHasher
from flows.stages.core import AbsPath, Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute


def task_splits(task: str) -> tuple[str, ...]:
    """Every split of the paper for ``task`` (train ones, validation, test), by their prepared table names."""
    from vlpet.catalog import CATALOG

    if task not in CATALOG:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(CATALOG)}")
    return CATALOG[task].splits


class BuildParams(StageParams):
    task: str
    split: str
    store: AbsPath
    root: AbsPath = "data"
    snapshot: str | None = None
    dataset: str | None = None

    @property
    def table(self) -> Path:
        return Path(self.root) / "tables" / (self.dataset or self.task) / f"{self.split}.arrow"


class Build(Stage[BuildParams]):
    name = "build"
    Params = BuildParams
    packages = ("pipelines", "features")

    def key_params(self, params: BuildParams) -> dict[str, Any]:
        return {**super().key_params(params), "dataset": params.dataset or params.task}

    def inputs(self, params: BuildParams, hasher: FileHasher) -> dict[str, str]:
        from features.store import FeatureStore

        if not params.table.is_file():
            raise FileNotFoundError(f"{params.table}: no unified table for task {params.task!r} split "
                                    f"{params.split!r}; run the prepare flow for {params.dataset or params.task!r} "
                                    "first")
        return {"table": hasher.file(params.table), "snapshot": FeatureStore.open(params.store).snapshot(
            params.snapshot).id}

    def run(self, params: BuildParams, ctx: StageContext) -> StageOutput:
        from features.store import FeatureStore
        from pipelines.tasks import build_task

        info = FeatureStore.open(params.store).snapshot(ctx.inputs["snapshot"])
        rep = build_task(ctx.root, params.task, params.split, params.store, snapshot=info.id, dataset=params.dataset)
        table = Ref("table", params.table, stage="prepare", params={"dataset": params.dataset or params.task,
                                                                     "split": params.split})
        features = Ref("features", info.path, sha256=info.content_digest(), stage="extract",
                       flags={"random_init_weights": bool(info.metadata.get("random_init"))})
        counts = {"rows_in": rep.rows_in, "rows_out": rep.rows_out, "excluded": rep.excluded}
        artifact = Artifact("task-table", "task-table", rep.out_path, [table, features],
                            {"task": params.task, "split": params.split, "snapshot": info.id}, counts=counts)
        result = {"task": params.task, "split": params.split, "path": rep.out_path, **counts,
                  "snapshot": rep.snapshot_id}
        return StageOutput(result, [rep.out_path, str(Path(rep.out_path).with_suffix(".report.json"))], [artifact],
                           counts=counts, main="task-table")


BUILD = Build()


def run_build(task: str, store: str | os.PathLike[str], root: str | os.PathLike[str] = "data", *,
              splits: Sequence[str] | None = None, snapshot: str | None = None, dataset: str | None = None,
              force: bool = False) -> dict[str, Any]:
    """The ``build`` stage for each split of ``task`` (default: every split of the paper); returns
    ``{"task", "store", "snapshot", "splits": {split: result}, "hits"}``."""
    out: dict[str, Any] = {"task": task, "store": str(Path(store).resolve()), "splits": {}, "hits": 0}
    for split in splits or task_splits(task):
        r = execute(BUILD, {"task": task, "split": split, "store": str(store), "root": str(root),
                            "snapshot": snapshot, "dataset": dataset}, force=force)
        out["splits"][split] = r
        out["snapshot"] = r["snapshot"]
        out["hits"] += int(r["cache_hit"])
    return out
