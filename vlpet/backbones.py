"""Backbones: resolve a name to a Hugging Face BART/T5 encoder-decoder, pretrained when it is on disk.

Resolution order for a name (``bart-base``, ``facebook/bart-base``, ``t5-base``, ``google-t5/t5-base``,
``tiny-bart``, ``tiny-t5``, or a directory):
1. a local directory holding ``config.json`` (``save_pretrained`` output or a hub snapshot);
2. the local Hugging Face cache (``local_files_only=True``; nothing is ever downloaded);
3. the architecture config with random weights, with a loud warning; ``BackboneInfo.pretrained`` is
   False, and the model config, checkpoints and lineage record it.
Tested with transformers 5.23 (the range in pyproject.toml is >=5.0,<6).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    PretrainedConfig,
    PreTrainedModel,
    T5Config,
    T5ForConditionalGeneration,
)

from vlpet.config import Family

log = logging.getLogger(__name__)


class RandomWeightsWarning(UserWarning):
    """Emitted whenever a backbone is built with random weights instead of pretrained ones."""


# Architecture configs of the public checkpoints (their config.json values), so models build offline.
_BART_BASE = dict(
    vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
    activation_function="gelu", dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, init_std=0.02,
    scale_embedding=False, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    forced_bos_token_id=0, forced_eos_token_id=2, tie_word_embeddings=True,
)
# bart-base's hub generation defaults, which every official BART generate call inherits (docs/method.md §5).
BART_BASE_GENERATION = dict(num_beams=4, no_repeat_ngram_size=3, early_stopping=True)
_T5_BASE = dict(
    vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
    layer_norm_epsilon=1e-6, initializer_factor=1.0, feed_forward_proj="relu", tie_word_embeddings=True,
    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)
_TINY_BART = {**_BART_BASE, **dict(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                   decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512,
                                   max_position_embeddings=1024)}
_TINY_T5 = {**_T5_BASE, **dict(d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4)}

ARCHITECTURES: dict[str, tuple[Family, dict[str, Any], tuple[str, ...]]] = {
    # name: (family, config, hub ids to look for in the local cache)
    "bart-base": ("bart", _BART_BASE, ("facebook/bart-base",)),
    "t5-base": ("t5", _T5_BASE, ("google-t5/t5-base", "t5-base")),
    "tiny-bart": ("bart", _TINY_BART, ()),
    "tiny-t5": ("t5", _TINY_T5, ()),
}
_ALIASES = {"facebook/bart-base": "bart-base", "google-t5/t5-base": "t5-base", "t5": "t5-base", "bart": "bart-base"}


@dataclass
class BackboneInfo:
    """Where a backbone came from; recorded in model configs, checkpoints and lineage."""

    name: str
    family: Family
    pretrained: bool
    source: str  # a path, "hf-cache:<id>", or "random:<arch>"
    origin: str = ""  # human-readable: public checkpoint, vlpet denoising pre-training, or random init

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "pretrained": self.pretrained, "source": self.source,
                "origin": self.origin}


def canonical_name(name: str) -> str:
    key = name.strip()
    return _ALIASES.get(key.lower(), key.lower()) if not Path(key).exists() else key


def family_of_config(config: PretrainedConfig) -> Family:
    if config.model_type == "bart":
        return "bart"
    if config.model_type == "t5":
        return "t5"
    raise ValueError(f"unsupported backbone model_type {config.model_type!r}: vlpet supports BART and T5")


def architecture_config(name: str, **overrides: Any) -> PretrainedConfig:
    """The HF config of a named architecture (no weights needed)."""
    key = canonical_name(name)
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(ARCHITECTURES)} (or a local directory)")
    family, cfg, _ = ARCHITECTURES[key]
    cls = BartConfig if family == "bart" else T5Config
    return cls(**{**cfg, **overrides})


def _model_class(family: Family) -> type[PreTrainedModel]:
    return BartForConditionalGeneration if family == "bart" else T5ForConditionalGeneration


def dropout_overrides(family: Family, p: float | None) -> dict[str, float]:
    """Config fields that set every dropout of a ``family`` backbone to ``p`` (none when ``p`` is None)."""
    if p is None:
        return {}
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {p}")
    return {"dropout": p, "attention_dropout": p, "activation_dropout": p} if family == "bart" else {"dropout_rate": p}


def _from_pretrained(path_or_id: str, local_only: bool, dropout: float | None = None) -> PreTrainedModel:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path_or_id, local_files_only=local_only)
    family = family_of_config(cfg)
    return _model_class(family).from_pretrained(path_or_id, local_files_only=local_only,
                                                **dropout_overrides(family, dropout))


def load_backbone(name: str, *, allow_random: bool = True, dropout: float | None = None, **config_overrides: Any
                  ) -> tuple[PreTrainedModel, BackboneInfo]:
    """Load a backbone by name or path: pretrained if on disk, else random weights with a loud warning.

    ``dropout`` (None: the checkpoint's own) replaces every dropout probability of the backbone, pretrained
    or not; ``config_overrides`` shape a random backbone only."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"backbone directory {path} has no config.json")
        model = _from_pretrained(str(path), local_only=True, dropout=dropout)
        record = path / "vlpet_pretraining.json"
        origin = json.loads(record.read_text())["origin"] if record.is_file() else f"local checkpoint {path}"
        return model, BackboneInfo(str(path), family_of_config(model.config), True, str(path.resolve()), origin)
    key = canonical_name(name)
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(ARCHITECTURES)} (or a local directory)")
    family, _, hub_ids = ARCHITECTURES[key]
    for hub_id in hub_ids:
        try:
            model = _from_pretrained(hub_id, local_only=True, dropout=dropout)
        except (OSError, ValueError):
            continue
        return model, BackboneInfo(key, family, True, f"hf-cache:{hub_id}", f"public checkpoint {hub_id}")
    if not allow_random:
        raise FileNotFoundError(
            f"no pretrained weights for {name!r} on this machine (looked in the local HF cache for "
            f"{', '.join(hub_ids) or 'nothing: tiny presets are random by design'}); pass a local directory")
    message = (f"RANDOM WEIGHTS: no pretrained weights for backbone {key!r} were found locally; building it "
               f"from its architecture config with random initialisation. Results will not be comparable to "
               f"the paper's.")
    if hub_ids:
        warnings.warn(message, RandomWeightsWarning, stacklevel=2)
        log.warning(message)
    model = _model_class(family)(architecture_config(key, **{**config_overrides, **dropout_overrides(family, dropout)}))
    return model, BackboneInfo(key, family, False, f"random:{key}", "RANDOM INIT (no pretrained weights)")


def load_pretrained_tokenizer(info: BackboneInfo):  # -> PreTrainedTokenizerBase | None
    """The backbone's own tokenizer when it is on disk, else None (see ``vlpet.tokenization``)."""
    from transformers import AutoTokenizer

    if not info.pretrained:
        return None
    source = info.source.removeprefix("hf-cache:")
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return None


def check_backbone_name(name: str) -> None:
    """Refuse, before anything is built or written, a backbone that is neither a known name nor a local
    directory with a config.json (``ValueError`` naming the value and what would work)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"backbone directory {path} has no config.json (is it a saved Hugging Face model?)")
        return
    if canonical_name(name) not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; use one of {', '.join(ARCHITECTURES)} or a local directory "
                         f"with a saved BART/T5 model")


def pretrained_available(name: str) -> bool:
    """Whether ``load_backbone(name)`` would find pretrained weights on disk (without loading them)."""
    from transformers import AutoConfig

    if Path(name).expanduser().is_dir():
        return True
    key = canonical_name(name)
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(ARCHITECTURES)} (or a local directory)")
    for hub_id in ARCHITECTURES[key][2]:
        try:
            AutoConfig.from_pretrained(hub_id, local_files_only=True)
            return True
        except (OSError, ValueError):
            continue
    return False
