"""The Prefect tasks of the stages: one task per stage, run through the executor (``flows.stages``), with the
stage's logs forwarded to the run and a cache hit shown as the ``Cached`` state (``flows.observe``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE

from flows import observe
from flows.stage_thread import run_in_fresh_thread
from flows.stages import (
    DOWNLOAD,
    EVALUATE,
    EXTRACT,
    PREPARE,
    REPORT,
    SYNTHESIZE,
    TRAIN,
    execute,
    run_build,
)


def _label(stage: str, params: Mapping[str, Any]) -> str:
    """A task run's name: the stage and the instance (dataset, store, task, preset, run)."""
    if stage in ("download", "prepare"):
        which = params["dataset"]
    elif stage == "extract":
        which = Path(params["store"]).name
    elif stage == "build":
        which = params["task"]
    elif stage == "train":
        which = params["config"].get("name", "run")
    elif stage == "evaluate":
        which = f"{Path(params['run_dir']).name}-{params.get('split', 'test')}"
    else:
        which = params.get("scale", "run")
    return f"{stage}-{which}"


def _stage_task(stage: str, runner: Callable[..., dict[str, Any]]) -> Any:
    """A Prefect task running one stage instance through the executor; its logs reach the run, a cache hit
    ends it in the ``Cached`` state. ``upstream``: the results it depends on (edges of the graph)."""

    def body(params: dict[str, Any], upstream: list[Any] | None = None,
             options: dict[str, Any] | None = None) -> Any:
        def run_stage() -> dict[str, Any]:
            with observe.stage_logs():  # inside the stage's own thread: its records are the ones forwarded
                return runner(params, **(options or {}))

        t0 = time.time()
        result = run_in_fresh_thread(run_stage, name=f"vlpet-{stage}")  # see flows.stage_thread: why
        return observe.stage_state(stage, {**result, "t_start": t0, "t_end": time.time()})

    def run_name() -> str:
        from prefect.runtime import task_run

        return _label(stage, task_run.parameters["params"])

    body.__name__ = body.__qualname__ = f"{stage}_stage"
    body.__doc__ = f"The ``{stage}`` stage (flows.stages) through the executor."
    return task(name=stage, task_run_name=run_name, cache_policy=NO_CACHE, persist_result=False)(body)


def _build_splits(params: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Every split of one task (one cached ``build`` stage run each), summed up as one result."""
    out = run_build(params["task"], params["store"], params["root"], splits=params.get("splits"),
                    snapshot=params.get("snapshot"), dataset=params.get("dataset"), force=force)
    splits = out["splits"].values()
    out["cache_hit"] = all(s["cache_hit"] for s in splits)
    out["seconds_this_run"] = round(sum(s["seconds_this_run"] for s in splits), 3)
    out["counts"] = {"splits": len(out["splits"]), "hits": out["hits"], "rows": sum(s["rows_out"] for s in splits)}
    out["lineage"] = [s["lineage"] for s in splits]
    return out


synthesize_task = _stage_task("synthesize", partial(execute, SYNTHESIZE))
download_task = _stage_task("download", partial(execute, DOWNLOAD))
prepare_task = _stage_task("prepare", partial(execute, PREPARE))
extract_task = _stage_task("extract", partial(execute, EXTRACT))
build_task = _stage_task("build", _build_splits)
train_task = _stage_task("train", partial(execute, TRAIN))
evaluate_task = _stage_task("evaluate", partial(execute, EVALUATE))
report_task = _stage_task("report", partial(execute, REPORT))


def finish(key: str, what: str, root: str, runs: list[tuple[str, dict[str, Any]]]) -> None:
    """The run's summary table and its lineage records, under stable keys (one history per flow + dataset)."""
    observe.publish_summary(key, runs, what)
    observe.publish_lineage(key, root, [i for _, r in runs for i in observe.lineage_ids(r)], what)
