"""``vlpet demo`` (the ``end-to-end`` flow, Prefect ephemeral mode) on the tiny synthetic scale: every stage
runs, the report has every task against its majority baseline, the lineage reaches the raw files, and a
second run with nothing changed is all cache hits (no extraction, no training). Both runs read back through the
Prefect client: one task per stage instance, image and video extraction overlapping, stage messages and the
RANDOM WEIGHTS warning in the run's logs, four artifacts with stable keys, and the re-run's tasks ``Cached``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TASKS = {"vqa", "gqa", "nlvr2", "coco", "tvqa", "how2qa", "tvc", "yc2c"}


def _vlpet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "vlpet"
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=900)


async def _read_runs(work: Path) -> list[dict]:
    """The finished end-to-end flow runs of the demo in ``work`` (oldest first), read through the Prefect client
    of the session's test API: task runs (name, state, start, end, upstream task run ids), logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    out = []
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["end-to-end"])),
                                           sort=FlowRunSort.START_TIME_ASC)
        for run in runs:
            if Path(run.parameters.get("workdir", "")).resolve() != work.resolve():
                continue  # another test's end-to-end run in the same session API
            ids = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            tasks = await client.read_task_runs(flow_run_filter=ids)
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])),
                                          limit=200)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            out.append({
                "state": run.state_name,
                "tasks": [{"id": str(t.id), "name": t.name, "state": t.state_name,
                           "start": t.start_time.timestamp() if t.start_time else None,
                           "end": t.end_time.timestamp() if t.end_time else None,
                           "upstream": sorted({str(i.id) for inputs in t.task_inputs.values() for i in inputs
                                               if getattr(i, "input_type", "") == "task_run"})} for t in tasks],
                "logs": [{"level": log.level, "message": log.message, "task": str(log.task_run_id)} for log in logs],
                "artifacts": [{"key": a.key, "type": a.type} for a in artifacts]})
    return out


def _walk(tree: dict) -> list[dict]:
    out = [tree]
    for child in tree.get("inputs", []):
        out.extend(_walk(child))
    return out


@pytest.mark.slow
def test_demo_end_to_end_then_cached_rerun(tmp_path, tiny_clip_pythonpath, prefect_ephemeral):
    # the demo's CLIP models are the tiny configs (same shapes; the real ones: test_clip_architectures.py). Both
    # runs report to the session's test API (one server start instead of three); the demo's own default (an
    # ephemeral API, state under the workdir): test_prefect_env_defaults_to_the_workdir_and_keeps_user_values
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": tiny_clip_pythonpath,
           "PREFECT_API_URL": PREFECT_API_URL.value()}
    env.pop("PREFECT_HOME", None)  # the demo's own default: Prefect files under the workdir
    work = tmp_path / "demo"
    first = _vlpet("demo", "--workdir", str(work), "--scale", "tiny", "--device", "cpu", "--weights", "random",
                   env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((work / "report.json").read_text())
    assert set(report["tasks"]) == TASKS
    for task, v in report["tasks"].items():
        assert v["metric"] in ("vqa_accuracy", "accuracy", "CIDEr"), task
        assert v["score"] is not None and v["majority_baseline"] is not None, task
    assert report["synthetic_data"] is True
    assert set(report["constant_output"]) == TASKS
    for task, v in report["tasks"].items():  # each eval example got a prediction, so at least one distinct one
        assert 1 <= v["distinct_predictions"] <= v["n"], task
        assert report["constant_output"][task] == (v["top_prediction_share"] >= 0.95), task
    assert report["feature_stores"]["images"]["random_init_weights"] is True
    assert report["weights"]["choice"] == "random" and "random-init" in report["weights"]["clip"]["images"]
    assert report["feature_stores"]["images"]["extracted"] == report["feature_stores"]["images"]["media"] > 0
    assert set(report["timings_s"]) >= {"synthesize", "download", "prepare", "extract", "build_tasks", "train",
                                        "evaluate", "total"}
    assert (work / "report.md").is_file() and "report.json" in first.stdout
    assert (work / ".prefect").is_dir()  # ephemeral Prefect state under the workdir, not $HOME

    # The lineage tree from the report reaches the raw downloaded files, and says what is synthetic / random.
    tree = _vlpet("lineage", report["lineage_root"], "--root", str(work / "data"), "--json", env=env)
    assert tree.returncode == 0, tree.stderr[-2000:]
    nodes = _walk(json.loads(tree.stdout))
    kinds = {n.get("kind") for n in nodes}
    assert {"report", "metrics", "checkpoint", "task-table", "features", "table", "raw"} <= kinds
    assert all(n.get("flags", {}).get("synthetic_data") for n in nodes if n.get("kind") in ("metrics", "checkpoint"))
    assert any(n.get("flags", {}).get("random_init_weights") for n in nodes if n.get("kind") == "checkpoint")

    second = _vlpet("demo", "--workdir", str(work), "--scale", "tiny", "--device", "cpu", "--weights", "random",
                    env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    again = json.loads((work / "report.json").read_text())
    for stage, hits in again["cache_hits"].items():
        done, total = hits.split("/")
        assert done == total, (stage, hits)  # nothing recomputed: no extraction, no training
    assert again["tasks"] == report["tasks"]

    first_run, second_run = asyncio.run(_read_runs(work))
    assert first_run["state"] == second_run["state"] == "Completed"
    tasks = {t["name"]: t for t in first_run["tasks"]}
    assert len(tasks) == len(first_run["tasks"]) == report["stage_runs"]  # one task per stage instance
    datasets = {"coco", "vqa", "gqa", "nlvr2", "tvqa", "how2qa", "tvc", "yc2c"}
    assert {f"download-{d}" for d in datasets} | {f"prepare-{d}" for d in datasets} | {
        f"build-{t}" for t in TASKS} | {"synthesize-tiny", "extract-clip-rn101-grid", "extract-clip-vit-b32-video",
                                        "train-synthetic-image", "train-synthetic-video", "report-tiny",
                                        "evaluate-synthetic-image-test", "evaluate-synthetic-video-test"} == set(tasks)
    images, videos = tasks["extract-clip-rn101-grid"], tasks["extract-clip-vit-b32-video"]
    assert images["start"] < videos["end"] and videos["start"] < images["end"]  # they ran at the same time
    assert tasks["build-vqa"]["id"] in tasks["train-synthetic-image"]["upstream"]  # dependencies are task results
    assert tasks["prepare-coco"]["id"] in tasks["build-coco"]["upstream"]
    messages = [(log["level"], log["message"]) for log in first_run["logs"]]
    assert any("extract: computed" in m and "extracted=" in m for _, m in messages)
    assert any(level >= 30 and "RANDOM WEIGHTS" in m for level, m in messages)
    keys = {a["key"] for a in first_run["artifacts"]}
    assert keys == {"end-to-end-summary", "end-to-end-metrics", "end-to-end-report", "end-to-end-lineage"}
    assert {a["key"] for a in second_run["artifacts"]} == keys  # the same keys: one history per artifact
    assert {t["state"] for t in second_run["tasks"]} == {"Cached"} and len(second_run["tasks"]) == len(tasks)
    assert any("cache hit" in log["message"] for log in second_run["logs"])


def test_prefect_env_defaults_to_the_workdir_and_keeps_user_values(tmp_path, monkeypatch):
    """``vlpet demo`` without any Prefect settings runs serverless with its state under the workdir; what the user
    set (a server's PREFECT_API_URL, their own PREFECT_HOME) is kept."""
    from flows.cli import prefect_env

    environ: dict[str, str] = {"PATH": os.environ.get("PATH", "")}
    monkeypatch.setattr(os, "environ", environ)
    prefect_env(tmp_path / "work")
    assert environ["PREFECT_HOME"] == str((tmp_path / "work").resolve() / ".prefect")
    assert (tmp_path / "work" / ".prefect").is_dir()
    assert "PREFECT_API_URL" not in environ  # no server: Prefect's ephemeral mode
    assert environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "WARNING"

    mine = {"PATH": environ["PATH"], "PREFECT_HOME": str(tmp_path / "mine"),
            "PREFECT_API_URL": "http://127.0.0.1:4200/api", "PREFECT_LOGGING_LEVEL": "DEBUG"}
    monkeypatch.setattr(os, "environ", dict(mine))
    prefect_env(tmp_path / "other")
    for key, value in mine.items():
        assert os.environ[key] == value
    assert not (tmp_path / "other").exists() and (tmp_path / "mine").is_dir()
