"""Scale-out of the ``extract`` stage on a Dask cluster through prefect-dask (``extract-features`` with
``cluster``): the stage plans one run of the store, one coarse Prefect task per shard
(``features.engine.run_extraction_shard(job, k, n)``) runs on the cluster through a ``DaskTaskRunner`` (a
subflow ``extract-features-shards`` carries that task runner), then the stage commits one snapshot,
bit-identical to a single-process extraction (batches are cut from the whole plan, shard k takes batches
k, k+n, ...). ``cluster``:

- ``"local:N"``: a ``distributed.LocalCluster`` of N single-threaded worker processes on this machine;
- ``"tcp://host:port"``: an existing scheduler (``dask scheduler`` + ``dask worker tcp://host:port`` on each
  machine; every worker must see the store and media paths, i.e. a shared filesystem);
- ``"local-cuda"``: ``dask_cuda.LocalCUDACluster()``, one worker per visible GPU (``pip install dask-cuda``).

Multi-GPU recipe: on a machine with G GPUs, ``cluster="local-cuda"`` (or start ``dask scheduler`` and
``dask-cuda-worker tcp://host:8786`` per machine, then ``cluster="tcp://host:8786"``): each worker process is
pinned to one GPU through ``CUDA_VISIBLE_DEVICES``, so ``device="auto"`` resolves to that worker's GPU;
``shards`` defaults to the number of workers. Every worker needs the same weights file (``pretrained``), else
the shard refuses to run. Dask worker processes are daemonic and cannot start DataLoader processes, so
decoding runs in the worker process unless ``workers`` is set (and the Dask config
``distributed.worker.daemon: false``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE

from flows.stages.extract import ShardExecutor, load_job


def dask_task_runner(cluster: str) -> Any:
    """A prefect-dask ``DaskTaskRunner`` for ``cluster`` (``local:N``, ``local-cuda``, ``tcp://host:port``)."""
    from prefect_dask import DaskTaskRunner

    if cluster.startswith("local:"):
        n = _local_workers(cluster)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    if cluster == "local-cuda":
        return DaskTaskRunner(cluster_class="dask_cuda.LocalCUDACluster", cluster_kwargs={"dashboard_address": None})
    if cluster.startswith(("tcp://", "tls://")):
        return DaskTaskRunner(address=cluster)
    raise ValueError(f"cluster={cluster!r}: use 'local:N', 'local-cuda' or 'tcp://host:port'")


def _local_workers(cluster: str) -> int:
    try:
        n = int(cluster.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"cluster={cluster!r}: 'local:N' needs a worker count N >= 1")
    return n


def default_shards(cluster: str) -> int:
    """Shards per cluster: one per worker (asks the scheduler for ``tcp://``, counts GPUs for ``local-cuda``)."""
    if cluster.startswith("local:"):
        return _local_workers(cluster)
    if cluster == "local-cuda":
        import torch

        return max(1, torch.cuda.device_count())
    from distributed import Client

    with Client(cluster, timeout=30, set_as_default=False) as client:
        return max(1, len(client.scheduler_info().get("workers", {})))


@task(name="extract-shard", cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=2)
def extract_shard_task(job_file: str, shard: int, n_shards: int, device: str = "auto",
                       workers: int | None = 0) -> dict[str, Any]:
    """One shard of a planned extraction, on whichever Dask worker runs it (coarse: one task per shard)."""
    import warnings

    from features.engine import run_extraction_shard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init weights warn once per worker; the snapshot records it
        return run_extraction_shard(load_job(job_file), shard, n_shards, device=device, workers=workers)


@flow(name="extract-features-shards", persist_result=False)
def extract_shards_flow(job_file: str, n_shards: int, device: str = "auto", workers: int | None = 0
                        ) -> list[dict[str, Any]]:
    """Fan the shards out on this flow's task runner (set by ``with_options(task_runner=...)``)."""
    futures = [extract_shard_task.submit(job_file, k, n_shards, device, workers) for k in range(n_shards)]
    return [f.result() for f in futures]


def dask_shard_executor(cluster: str, *, device: str = "auto", workers: int | None = 0) -> ShardExecutor:
    """The ``extract`` stage's ``shard_executor`` run option for ``cluster``."""
    def execute(job_file: str, n_shards: int) -> list[dict[str, Any]]:
        sub = extract_shards_flow.with_options(task_runner=dask_task_runner(cluster))
        return sub(job_file=job_file, n_shards=n_shards, device=device, workers=workers)

    return execute
