"""vlpet: the VL-PET model library (ICCV 2023, "Vision-and-Language Parameter-Efficient Tuning via
Granularity Control") on Hugging Face BART and T5, with the paper's baselines.

Public API:
- configs: ``VLPETConfig``, ``AdapterConfig``, ``CompacterConfig``, ``LoRAConfig``, ``BitFitConfig``,
  ``PromptTuningConfig``, ``FullFineTuneConfig``; ``method_config(name)`` for the paper's named methods;
- ``build_model(backbone, method, ...)`` applies a method to a backbone;
- ``count_parameters(model)`` / ``method_param_counts(backbone)``;
- ``save_checkpoint`` / ``load_trainable`` / ``load_model`` (trainable weights only, safetensors).
This package never imports ``pipelines``, ``features`` or ``flows``.
"""

__version__ = "0.1.0"

from vlpet.build import build_model
from vlpet.checkpoint import CheckpointMismatchError, load_model, load_trainable, save_checkpoint
from vlpet.config import (
    PAPER_METHODS,
    TRANSFER_METHODS,
    AdapterConfig,
    BitFitConfig,
    CompacterConfig,
    FullFineTuneConfig,
    LoRAConfig,
    PromptTuningConfig,
    VLPETConfig,
    known_methods,
    method_config,
)
from vlpet.model import VisualConfig, VLSeq2Seq, seq2seq_loss
from vlpet.params import count_parameters, method_param_counts

__all__ = [
    "PAPER_METHODS", "TRANSFER_METHODS", "AdapterConfig", "BitFitConfig", "CheckpointMismatchError",
    "CompacterConfig", "FullFineTuneConfig", "LoRAConfig", "PromptTuningConfig", "VLPETConfig", "VLSeq2Seq",
    "VisualConfig", "build_model", "count_parameters", "known_methods", "load_model", "load_trainable",
    "method_config", "method_param_counts", "save_checkpoint", "seq2seq_loss",
]
