"""Backbones: resolve a name to a Hugging Face BART/T5 encoder-decoder, official pretrained weights by default.

Resolution of a name (``bart-base``, ``facebook/bart-base``, ``t5-base``, ``google-t5/t5-base``, ``tiny-bart``,
``tiny-t5``, or a directory) with ``weights="official"`` (the default):
1. a local directory holding ``config.json`` (``save_pretrained`` output or a hub snapshot);
2. ``bart-base`` / ``t5-base``: the public checkpoint ``facebook/bart-base`` / ``google-t5/t5-base`` (weights,
   config and tokenizer files), downloaded on first use into the standard Hugging Face cache through
   ``vlpet.hub`` (huggingface_hub, the same cache transformers uses; verified against the hub's sha256) and
   read from there afterwards. Not obtainable: :class:`vlpet.hub.WeightsUnavailableError`, never a fallback;
3. ``tiny-bart`` / ``tiny-t5``: test architectures that have no public weights, always random.
``weights="random"``: the architecture config with random weights, asked for by name (tests, benchmarks, the
offline demo); ``BackboneInfo.pretrained`` is False, and the model config, checkpoints and lineage record it.
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
from vlpet.hub import HubFile, check_weights, hub_file

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
    # name: (family, config, hub ids of its official weights)
    "bart-base": ("bart", _BART_BASE, ("facebook/bart-base",)),
    "t5-base": ("t5", _T5_BASE, ("google-t5/t5-base",)),
    "tiny-bart": ("bart", _TINY_BART, ()),
    "tiny-t5": ("t5", _TINY_T5, ()),
}
_ALIASES = {"facebook/bart-base": "bart-base", "google-t5/t5-base": "t5-base", "t5": "t5-base", "bart": "bart-base"}
# The files of an official checkpoint: required ones, then ones a repo may or may not have (a 404 is fine).
# Safetensors only: weights are never unpickled.
OFFICIAL_FILES: dict[Family, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bart": (("config.json", "model.safetensors", "tokenizer.json"),
             ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
              "merges.txt")),
    "t5": (("config.json", "model.safetensors", "tokenizer.json"),
           ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model")),
}


@dataclass
class BackboneInfo:
    """Where a backbone came from; recorded in model configs, checkpoints and lineage."""

    name: str
    family: Family
    pretrained: bool
    source: str  # a path, "hf:<repo id>@<commit>", or "random:<arch>"
    origin: str = ""  # human-readable: public checkpoint, vlpet denoising pre-training, or random init
    sha256: str | None = None  # of the hub checkpoint's model.safetensors
    path: str | None = None  # the local folder the weights were read from (a hub snapshot or a directory)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "pretrained": self.pretrained, "source": self.source,
                "origin": self.origin, "sha256": self.sha256}


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


def official_repo(name: str) -> str | None:
    """The hub repo of a named backbone's official weights (None for a directory or a tiny test architecture)."""
    if Path(name).expanduser().is_dir():
        return None
    key = canonical_name(name)
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(ARCHITECTURES)} (or a local directory)")
    hub_ids = ARCHITECTURES[key][2]
    return hub_ids[0] if hub_ids else None


def fetch_backbone(name: str) -> list[HubFile]:
    """Every file of a named backbone's official checkpoint, from the hub cache (downloaded on first use, all at
    the commit ``main`` pointed to when ``config.json`` was resolved); [] for names without official weights.
    Raises :class:`vlpet.hub.WeightsUnavailableError` when they cannot be had."""
    repo = official_repo(name)
    if repo is None:
        return []
    family = ARCHITECTURES[canonical_name(name)][0]
    required, optional = OFFICIAL_FILES[family]
    how = dict(fetch_name=canonical_name(name), alternative="a local checkpoint directory: --backbone DIR")
    config = hub_file(repo, required[0], **how)
    assert config is not None
    files = [config]
    for fname in (*required[1:], *optional):
        got = hub_file(repo, fname, revision=config.revision, required=fname in required, **how)
        if got is not None:
            files.append(got)
    return files


def load_backbone(name: str, *, weights: str = "official", dropout: float | None = None, **config_overrides: Any
                  ) -> tuple[PreTrainedModel, BackboneInfo]:
    """Load a backbone by name or path: official pretrained weights unless ``weights="random"`` (see the module
    docstring). ``dropout`` (None: the checkpoint's own) replaces every dropout probability of the backbone,
    pretrained or not; ``config_overrides`` shape a random backbone only."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"backbone directory {path} has no config.json")
        model = _from_pretrained(str(path), local_only=True, dropout=dropout)
        record = path / "vlpet_pretraining.json"
        origin = json.loads(record.read_text())["origin"] if record.is_file() else f"local checkpoint {path}"
        return model, BackboneInfo(str(path), family_of_config(model.config), True, str(path.resolve()), origin,
                                   path=str(path.resolve()))
    key = canonical_name(name)
    repo = official_repo(name)
    family = ARCHITECTURES[key][0]
    if check_weights(weights) == "official" and repo is not None:
        files = fetch_backbone(key)
        snapshot = Path(files[0].path).parent
        weights_file = next(f for f in files if f.filename == "model.safetensors")
        model = _from_pretrained(str(snapshot), local_only=True, dropout=dropout)
        return model, BackboneInfo(key, family, True, f"hf:{repo}@{files[0].revision}", f"public checkpoint {repo}",
                                   sha256=weights_file.sha256, path=str(snapshot))
    if repo is not None:
        message = (f"RANDOM WEIGHTS (--weights random): building backbone {key!r} from its architecture config "
                   "with random initialisation. Results will not be comparable to the paper's.")
        warnings.warn(message, RandomWeightsWarning, stacklevel=2)
        log.warning(message)
    model = _model_class(family)(architecture_config(key, **{**config_overrides, **dropout_overrides(family, dropout)}))
    return model, BackboneInfo(key, family, False, f"random:{key}", "RANDOM INIT (no pretrained weights)")


def load_pretrained_tokenizer(info: BackboneInfo):  # -> PreTrainedTokenizerBase | None
    """The backbone's own tokenizer (from the folder its weights came from), else None (see
    ``vlpet.tokenization``)."""
    from transformers import AutoTokenizer

    if not info.pretrained:
        return None
    source = info.path or info.source
    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return None


def has_official_weights(name: str) -> bool:
    """Whether ``name`` is a directory or a backbone with official hub weights (``weights="official"`` loads
    pretrained weights for it), rather than a test architecture that is random by design."""
    return Path(name).expanduser().is_dir() or official_repo(name) is not None


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
