"""The ``report`` stage (the demo's last step): every task's score against its majority baseline, from the
evaluations' ``metrics.json`` files, as ``results.json`` (recorded in the lineage as kind ``report``, linked to
the metrics, so its tree reaches every raw file).

Keyed by the metrics files' content. The per-run parts (timings, cache hits) are not a cached artifact: the
end-to-end flow adds them in ``report.json`` / ``report.md`` (``flows.demo.write_report``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.caching import FileHasher, write_json_atomic
from flows.stages.core import AbsPath, Artifact, Ref, Stage, StageContext, StageOutput, StageParams, execute

CONSTANT_SHARE = 0.95  # the share of one prediction above which a task's output counts as constant
RESULTS_FILE = "results.json"


class ReportParams(StageParams):
    workdir: AbsPath
    root: AbsPath
    metrics: list[AbsPath]  # the evaluations' metrics.json files
    scale: str = "demo"
    seed: int = 0
    notes: tuple[str, ...] = ()


def task_rows(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row per task of an evaluation: score, majority baseline, prediction spread."""
    return {task: {"metric": m["metric"], "score": m.get("score"),
                   "majority_baseline": m["majority_baseline"].get("score"),
                   "majority_prediction": m["majority_baseline"].get("prediction"),
                   "split": m.get("split"), "n": m.get("n"), "distinct_predictions": m.get("distinct_predictions"),
                   "top_prediction_share": m.get("top_prediction_share")} for task, m in metrics["tasks"].items()}


class Report(Stage[ReportParams]):
    name = "report"
    Params = ReportParams
    packages = ("flows",)
    unkeyed = frozenset({"root"})

    def inputs(self, params: ReportParams, hasher: FileHasher) -> dict[str, str]:
        return {f"metrics/{i}": hasher.file(p) for i, p in enumerate(params.metrics)}

    def run(self, params: ReportParams, ctx: StageContext) -> StageOutput:
        tasks: dict[str, dict[str, Any]] = {}
        notes = list(params.notes)
        for path in params.metrics:
            metrics = json.loads(Path(path).read_text())
            tasks.update(task_rows(metrics))
            notes.extend(metrics.get("notes", []))
        results = {
            "synthetic_data": True, "scale": params.scale, "seed": params.seed, "tasks": tasks,
            "beats_majority_baseline": {t: (v["score"] is not None and v["majority_baseline"] is not None
                                            and v["score"] > v["majority_baseline"]) for t, v in tasks.items()},
            # A model giving (nearly) one answer to everything is a constant baseline whatever its score says.
            "constant_output": {t: (v["top_prediction_share"] or 0.0) >= CONSTANT_SHARE for t, v in tasks.items()},
            "notes": list(dict.fromkeys(notes))}
        path = write_json_atomic(Path(params.workdir) / RESULTS_FILE, results)
        artifact = Artifact("report", "report", path, [Ref("metrics", p, stage="evaluate") for p in params.metrics],
                            {"scale": params.scale, "seed": params.seed}, flags={"synthetic_data": True})
        return StageOutput({**results, "results_path": str(path)}, [str(path)], [artifact],
                           counts={"tasks": len(tasks)}, main="report")


REPORT = Report()


def run_report(**params: Any) -> dict[str, Any]:
    return execute(REPORT, params)
