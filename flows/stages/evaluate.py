"""The ``evaluate`` stage: ``flows.runs.evaluate_run`` of a trained run on a split (metrics against the
majority baseline, predictions, a report).

Keyed by the selected model's content, the evaluated tables, the training tables (the majority baseline reads
them) and the code. Records ``metrics.json`` linked to the checkpoint and the evaluated tables, with every
task's score and majority baseline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import model_validator

from flows.caching import FileHasher
from flows.stages.core import AbsPath, Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute
from flows.stages.train import CODE_TRAIN, default_root, table_inputs, table_refs


class EvaluateParams(StageParams):
    run_dir: AbsPath
    root: AbsPath | None = None  # default: $VLPET_DATA_ROOT, else the parent of the run's task tables
    split: str = "test"
    tasks_dir: AbsPath | None = None  # default: the one the run trained on
    device: str = "auto"

    @model_validator(mode="after")
    def _complete(self) -> EvaluateParams:
        if self.root is None:
            object.__setattr__(self, "root", default_root(None, self.tables()[1]))
        return self

    def saved(self) -> dict[str, Any]:
        from flows.runs import CONFIG_FILE

        path = Path(self.run_dir) / CONFIG_FILE
        if not path.is_file() or not (Path(self.run_dir) / "model").is_dir():
            raise FileNotFoundError(f"{self.run_dir} is not a finished training run (needs {CONFIG_FILE} and "
                                    "model/)")
        return json.loads(path.read_text())

    def tables(self) -> tuple[Any, Path]:
        from vlpet.train import TrainConfig

        saved = self.saved()
        return TrainConfig.model_validate(saved["train"]), Path(self.tasks_dir or saved["tasks_dir"])


class Evaluate(Stage[EvaluateParams]):
    name = "evaluate"
    Params = EvaluateParams
    packages = CODE_TRAIN
    unkeyed = frozenset({"root", "tasks_dir"})

    def inputs(self, params: EvaluateParams, hasher: FileHasher) -> dict[str, str]:
        cfg, tasks = params.tables()
        return {"model": hasher.digest(Path(params.run_dir) / "model"),
                **{f"eval:{k}": hasher.file(p) for k, p in table_inputs(tasks, cfg, params.split).items()},
                **{f"train:{k}": hasher.file(p) for k, p in table_inputs(tasks, cfg, "train").items()}}

    def run(self, params: EvaluateParams, ctx: StageContext) -> StageOutput:
        from flows.runs import evaluate_run

        cfg, tasks = params.tables()
        run_dir = Path(params.run_dir)
        metrics = evaluate_run(run_dir, params.split, tasks_dir=tasks, device=params.device,
                               progress=ctx.option("progress", False))
        scores = {t: {"metric": m["metric"], "score": m.get("score"),
                      "majority_baseline": m["majority_baseline"].get("score")} for t, m in metrics["tasks"].items()}
        counts = {t: m.get("n", 0) for t, m in metrics["tasks"].items()}
        artifact = Artifact("metrics", "metrics", run_dir / "metrics.json",
                            [Ref("checkpoint", run_dir / "model", stage="train"),
                             *table_refs(table_inputs(tasks, cfg, params.split))],
                            {"split": params.split, "tasks": cfg.tasks}, device=metrics["device"], counts=counts,
                            extra={"scores": scores})
        result = {"run": metrics["run"], "run_dir": params.run_dir, "split": params.split,
                  "metrics_path": str(run_dir / "metrics.json"), "report": str(run_dir / "report.md"),
                  "tasks": metrics["tasks"], "notes": metrics["notes"], "device": metrics["device"]}
        return StageOutput(result, [str(run_dir / "metrics.json"), str(run_dir / "report.md")], [artifact],
                           counts={"tasks": len(counts), "examples": sum(counts.values())}, main="metrics")


EVALUATE = Evaluate()


def run_evaluate(run_dir: str | os.PathLike[str], root: str | os.PathLike[str] | None, split: str = "test", *,
                 tasks_dir: str | os.PathLike[str] | None = None, device: str = "auto", force: bool = False,
                 **options: Any) -> dict[str, Any]:
    """The ``evaluate`` stage through the executor (``options``: progress)."""
    return execute(EVALUATE, {"run_dir": str(run_dir), "root": None if root is None else str(root), "split": split,
                              "tasks_dir": None if tasks_dir is None else str(tasks_dir), "device": device},
                   force=force, **options)
