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

# The public names resolve on first use (PEP 562), so ``import vlpet`` (and the ``vlpet`` command line, whose
# --help must answer at once) does not pay for torch and transformers until a model is actually built; nor
# does ``features`` when it uses the dependency-free helpers (``vlpet.atomic``, ``vlpet.provenance``).
_EXPORTS = {
    "build_model": "vlpet.build",
    "CheckpointMismatchError": "vlpet.checkpoint", "load_model": "vlpet.checkpoint",
    "load_trainable": "vlpet.checkpoint", "save_checkpoint": "vlpet.checkpoint",
    "PAPER_METHODS": "vlpet.config", "TRANSFER_METHODS": "vlpet.config", "AdapterConfig": "vlpet.config",
    "BitFitConfig": "vlpet.config", "CompacterConfig": "vlpet.config", "FullFineTuneConfig": "vlpet.config",
    "LoRAConfig": "vlpet.config", "PromptTuningConfig": "vlpet.config", "VLPETConfig": "vlpet.config",
    "known_methods": "vlpet.config", "method_config": "vlpet.config",
    "VisualConfig": "vlpet.model", "VLSeq2Seq": "vlpet.model", "seq2seq_loss": "vlpet.model",
    "count_parameters": "vlpet.params", "method_param_counts": "vlpet.params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlpet' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
