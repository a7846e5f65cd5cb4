"""``torchrun`` support: read the launcher's environment, start the process group, pick the device.

The device rule itself is ``vlpet.device.resolve_device`` (pass ``DistInfo.local_rank``).
Single-process runs never touch ``torch.distributed``. Under ``torchrun --nproc_per_node N`` every rank
builds the same model (same seed), wraps it in DistributedDataParallel, reads its own shard of each epoch's
batch list (the loader shards by rank), and only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """The ranks ``torchrun`` exports (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); 0/1/0 otherwise."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as e:
        raise ValueError(f"torchrun environment is malformed (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from None


def init_process_group(info: DistInfo, device: torch.device) -> None:
    """NCCL on GPUs, gloo on the CPU; no-op when not distributed or already initialised."""
    if info.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=info.rank,
                                world_size=info.world_size)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def destroy(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
