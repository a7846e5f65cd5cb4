"""What a Prefect user sees of a stage run: its messages in the run's logs, a cache hit as a task state, and a
few artifacts with stable keys (one history per flow and dataset on the Artifacts page).

- ``stage_logs()``: while a stage runs in a task, records of the ``flows``, ``features``, ``pipelines`` and
  ``vlpet`` loggers from that thread (stage messages, counts, RANDOM WEIGHTS and quarantine warnings) go to
  the task run's logger, so they reach the run's Logs tab (Prefect never sees module loggers by itself).
- ``stage_state(result)``: a cache hit ends the task in a ``Completed`` state named ``Cached``, with the key.
- ``publish_*``: the summary table (stage, cache hit or computed, counts, seconds), the metrics table (scores
  against the majority baseline), the report, and the lineage records behind them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

FORWARDED = ("flows", "features", "pipelines", "vlpet")


class _ThreadToRunLogger(logging.Handler):
    """Forwards one thread's records to a Prefect run logger (other threads run other tasks)."""

    def __init__(self, run_logger: Any) -> None:
        super().__init__(logging.INFO)
        self.run_logger = run_logger
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.run_logger.log(record.levelno, "%s: %s", record.name, record.getMessage())


@contextlib.contextmanager
def stage_logs() -> Iterator[Any]:
    """Forward the packages' log records from this thread to the current run's logger (yielded)."""
    from prefect import get_run_logger

    run_logger = get_run_logger()
    handler = _ThreadToRunLogger(run_logger)
    loggers = [logging.getLogger(name) for name in FORWARDED]
    for lg in loggers:
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)  # stage messages are INFO; the root logger's WARNING would drop them
        lg.addHandler(handler)
    try:
        yield run_logger
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def stage_state(stage: str, result: dict[str, Any]) -> Any:
    """The task's final state: ``Cached`` (with the key) on a cache hit, ``Completed`` with the counts otherwise."""
    from prefect.states import Completed

    if result.get("cache_hit"):
        return Completed(data=result, name="Cached",
                         message=f"{stage}: cache hit, nothing recomputed (key {str(result.get('cache_key'))[:12]})")
    counts = ", ".join(f"{k} {v}" for k, v in (result.get("counts") or {}).items())
    return Completed(data=result, message=f"{stage}: computed in {result.get('seconds_this_run')} s; {counts}")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from ``parts``: stable across runs."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")


def summary_rows(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per stage run: (label, executor result) -> stage, instance, cache, counts, seconds, lineage."""
    rows = []
    for label, r in runs:
        lineage = r.get("lineage")
        rows.append({"stage": label.split(" ", 1)[0], "instance": label.split(" ", 1)[-1],
                     "cache": "hit" if r.get("cache_hit") else "computed",
                     "counts": ", ".join(f"{k} {v}" for k, v in (r.get("counts") or {}).items()),
                     "seconds": r.get("seconds_this_run"),
                     "lineage": lineage if isinstance(lineage, str) else f"{len(lineage or [])} records"})
    return rows


def publish_summary(key: str, runs: Sequence[tuple[str, Mapping[str, Any]]], what: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=summary_rows(runs), key=artifact_key(key, "summary"),
                          description=f"{what}: every stage of this run, cache hit or computed, counts, seconds")


def publish_lineage(key: str, root: str, ids: Sequence[str], what: str) -> None:
    """The lineage records a run made or reused, with the command that prints each tree."""
    from prefect.artifacts import create_markdown_artifact

    from flows.lineage import LineageStore, to_markdown

    store = LineageStore(root)
    parts = [f"# Lineage: {what}", "", f"Data root `{root}`; `vlpet lineage ID --root {root}` prints a tree.", ""]
    for rid in dict.fromkeys(ids):
        rec = store.get(rid)
        if rec is not None:
            parts += [to_markdown(rec), ""]
    create_markdown_artifact(markdown="\n".join(parts), key=artifact_key(key, "lineage"),
                             description=f"{what}: the lineage records behind this run's outputs")


def publish_metrics(key: str, tasks: Mapping[str, Mapping[str, Any]], what: str) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [{"task": t, "metric": m["metric"], "score": m.get("score"),
             "majority_baseline": (m["majority_baseline"].get("score") if isinstance(m.get("majority_baseline"),
                                   Mapping) else m.get("majority_baseline")),
             "split": m.get("split"), "n": m.get("n")} for t, m in tasks.items()]
    for row in rows:
        row["beats_baseline"] = (row["score"] is not None and row["majority_baseline"] is not None
                                 and row["score"] > row["majority_baseline"])
    create_table_artifact(table=rows, key=artifact_key(key, "metrics"),
                          description=f"{what}: every task's score against its majority-answer baseline")


def publish_report(key: str, markdown: str, what: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=artifact_key(key, "report"), description=what)


def lineage_ids(result: Mapping[str, Any]) -> list[str]:
    lineage = result.get("lineage")
    if isinstance(lineage, str):
        return [lineage]
    return [str(x) for x in lineage or []]


def wait_for_task_runs(flow_run_id: Any, expected: int, timeout: float = 60.0) -> bool:
    """Wait until the API holds ``expected`` task runs of the flow run, all in a final state. The server records
    task-run states from events, asynchronously: a process that exits right after a fast run (all cache hits)
    would stop its temporary server before they are written. Returns whether they all arrived in time."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expected and all(r.state is not None and r.state.is_final() for r in runs):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
