"""Reads finished ``end-to-end`` flow runs back through the Prefect client and prints them as one JSON line:
per run (oldest first) its task runs (name, state, start, end, upstream task run ids), log messages and
artifacts. Run as ``python -m tests.prefect_readback`` with ``PREFECT_HOME`` set to the demo's Prefect home
(the client then starts a temporary server on that database)."""

from __future__ import annotations

import asyncio
import json


async def _read() -> list[dict]:
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


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_read())))
