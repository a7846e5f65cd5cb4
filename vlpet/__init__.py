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

from importlib import import_module
from typing import Any

# The public names, loaded on first use: importing a dependency-free module such as ``vlpet.atomic`` or
# ``vlpet.provenance`` (which ``features`` uses) must not pull in torch and transformers.
_EXPORTS = {
    "build_model": "vlpet.build",
    **dict.fromkeys(("CheckpointMismatchError", "load_model", "load_trainable", "save_checkpoint"),
                    "vlpet.checkpoint"),
    **dict.fromkeys(("PAPER_METHODS", "TRANSFER_METHODS", "AdapterConfig", "BitFitConfig", "CompacterConfig",
                     "FullFineTuneConfig", "LoRAConfig", "PromptTuningConfig", "VLPETConfig", "known_methods",
                     "method_config"), "vlpet.config"),
    **dict.fromkeys(("VisualConfig", "VLSeq2Seq", "seq2seq_loss"), "vlpet.model"),
    **dict.fromkeys(("count_parameters", "method_param_counts"), "vlpet.params"),
}
__all__ = [
    "PAPER_METHODS", "TRANSFER_METHODS", "AdapterConfig", "BitFitConfig", "CheckpointMismatchError",
    "CompacterConfig", "FullFineTuneConfig", "LoRAConfig", "PromptTuningConfig", "VLPETConfig", "VLSeq2Seq",
    "VisualConfig", "build_model", "count_parameters", "known_methods", "load_model", "load_trainable",
    "method_config", "method_param_counts", "save_checkpoint", "seq2seq_loss",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlpet' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

