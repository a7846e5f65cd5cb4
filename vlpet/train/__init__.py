"""The VL-PET trainer: configs and paper presets, the official optimizer/schedule, the multi-task loop with
exact resume, and ``torchrun`` support. Data-source agnostic (see ``BatchSource``)."""

from vlpet.device import resolve_device
from vlpet.train.config import (
    IMAGE_TASKS,
    PRESETS,
    TEST_SPLITS,
    TRAIN_SPLITS,
    VAL_SPLITS,
    VIDEO_TASKS,
    PretrainConfig,
    TrainConfig,
    preset,
)
from vlpet.train.distributed import DistInfo, dist_from_env
from vlpet.train.loop import BatchSource, ListBatchSource, Trainer, TrainResult, config_digest, read_losses
from vlpet.train.optim import build_optimizer, build_scheduler, no_decay_names, parameter_groups

__all__ = [
    "IMAGE_TASKS",
    "PRESETS",
    "TEST_SPLITS",
    "TRAIN_SPLITS",
    "VAL_SPLITS",
    "VIDEO_TASKS",
    "BatchSource",
    "DistInfo",
    "ListBatchSource",
    "PretrainConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "config_digest",
    "dist_from_env",
    "no_decay_names",
    "parameter_groups",
    "preset",
    "read_losses",
    "resolve_device",
]
