"""``vlpet serve``: every pipeline flow as the deployment ``<flow>/default`` (Prefect ``serve``), each with the
flow's description and tags that say what it touches (``stage:extract``, ``gpu``, ``demo``, ...).

The three commands (a local Prefect server, the served deployments, one run), from the repository root::

    export PREFECT_HOME=$PWD/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false
    prefect server start --host 127.0.0.1 --port 4200 --analytics-off --no-ui &
    #   wait until `curl -sf http://127.0.0.1:4200/api/health` answers (about 10 s on a fresh database)
    PREFECT_API_URL=http://127.0.0.1:4200/api PREFECT_RUNNER_POLL_FREQUENCY=1 vlpet serve &
    PREFECT_API_URL=http://127.0.0.1:4200/api prefect deployment run extract-features/default \\
        -p media=data/raw/coco -p store=data/stores/coco-rn101 --watch

Settings that matter:

- ``PREFECT_API_URL`` (``http://127.0.0.1:4200/api``) in the shell of ``vlpet serve`` and of the CLI, else
  each starts its own temporary (ephemeral) server and they never meet;
- ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` (and ``--analytics-off``): nothing outbound is reachable, and
  with analytics on the SQLite database logs ``database is locked`` errors;
- ``PREFECT_RUNNER_POLL_FREQUENCY=1``: the served runner polls for scheduled runs every second (default 10 s);
- ``PREFECT_HOME``: where the server's SQLite database lives (one per project or test);
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90`` for runs without a server on a loaded machine;
- stop ``vlpet serve`` and the server by PID (``kill <pid>``: both exit within a few seconds).

Cache and lineage of a run live under the data root (``<root>/.vlpet``), not under ``PREFECT_HOME``; flow
results are not persisted by Prefect (``persist_result=False``).

``prefect.yaml`` declares the same deployments for a process work pool instead::

    prefect work-pool create vlpet-process --type process
    prefect deploy --all                # from the repository root, with PREFECT_API_URL set
    prefect worker start --pool vlpet-process    # a worker needs two SIGTERMs to stop
"""

from __future__ import annotations

from typing import Any

DEPLOYMENT_NAME = "default"


def deployments(flows: list[Any] | None = None) -> list[Any]:
    """``flow.to_deployment(name="default")`` for every flow (entrypoints by module path, so the runner finds
    them from any working directory where the ``vlpet`` distribution is installed)."""
    from prefect.types.entrypoint import EntrypointType

    from flows.prefect_flows import FLOWS, TAGS

    return [f.to_deployment(name=DEPLOYMENT_NAME, entrypoint_type=EntrypointType.MODULE_PATH,
                            description=(f.description or "").strip().split("\n\n")[0] if f.description else None,
                            tags=TAGS.get(f.name, ["vlpet"]))
            for f in (flows if flows is not None else FLOWS)]


def deployment_names(flows: list[Any] | None = None) -> list[str]:
    from flows.prefect_flows import FLOWS

    return [f"{f.name}/{DEPLOYMENT_NAME}" for f in (flows if flows is not None else FLOWS)]


def serve_all(limit: int | None = None) -> None:
    """Serve every flow until interrupted (SIGINT/SIGTERM)."""
    from prefect import serve

    serve(*deployments(), limit=limit)
