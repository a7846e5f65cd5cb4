"""Save and load only what a PET run changes: trainable weights (safetensors) plus a JSON config.

Layout of a checkpoint directory:
- ``vlpet_config.json``: method config, backbone name/source/pretrained flag, backbone config, visual
  config, vocab sizes, library versions, the sorted trainable keys;
- ``trainable.safetensors``: the trainable parameters;
- ``frozen_extra.safetensors``: frozen tensors a fresh backbone cannot reproduce: the word-embedding rows
  we added for the VL special tokens (random at resize, never trained), and, when the backbone itself
  has random weights, every frozen parameter (so the run can be restored bit for bit);
- ``tokenizer/`` when a tokenizer is given.
Nothing is unpickled: safetensors and JSON only. Writes go to a temporary directory renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter
from safetensors.torch import load_file, save_file

from vlpet.config import MethodConfig
from vlpet.model import VisualConfig, VLSeq2Seq
from vlpet.provenance import library_versions

CONFIG_NAME = "vlpet_config.json"
LIBRARIES = ("vlpet", "torch", "transformers")  # the versions a checkpoint records
TRAINABLE_NAME = "trainable.safetensors"
FROZEN_NAME = "frozen_extra.safetensors"
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint was made for another method, backbone or visual input than the model given."""


class CheckpointCorruptError(ValueError):
    """A checkpoint file cannot be read (truncated, overwritten, not what its name says); names the file."""


def load_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` whose errors name the file (safetensors' own say only, e.g., "header too
    large")."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointCorruptError(f"checkpoint file {path} is missing")
    try:
        return load_file(path)
    except Exception as e:  # SafetensorError, OSError, ValueError: all mean the file is unusable
        raise CheckpointCorruptError(f"checkpoint file {path} is corrupt or truncated "
                                     f"({type(e).__name__}: {e})") from None


def _frozen_extra(model: VLSeq2Seq) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    if not model.info.pretrained:
        out.update({n: p.detach() for n, p in params.items() if not p.requires_grad})
    else:
        emb = model.backbone.get_input_embeddings()
        if not emb.weight.requires_grad and emb.num_embeddings > model.base_vocab_size:
            out["added_vocab_rows"] = emb.weight.detach()[model.base_vocab_size:]
    return out


def save_checkpoint(model: VLSeq2Seq, directory: str | os.PathLike[str], tokenizer: Any = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint atomically (tmp dir + rename); an existing checkpoint is replaced whole."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        trainable = {n: t.contiguous().cpu() for n, t in model.trainable_state_dict().items()}
        save_file(trainable, tmp / TRAINABLE_NAME, metadata={"format": "vlpet", "version": str(FORMAT_VERSION)})
        frozen = {n: t.contiguous().cpu() for n, t in _frozen_extra(model).items()}
        if frozen:
            save_file(frozen, tmp / FROZEN_NAME)
        config = {"format_version": FORMAT_VERSION, **model.describe(), "libraries": library_versions(LIBRARIES),
                  "trainable_keys": sorted(trainable), "extra": extra or {}}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "tokenizer")
        if target.exists():
            backup = target.with_name(target.name + ".old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            tmp.rename(target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a vlpet checkpoint: {CONFIG_NAME} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointCorruptError(f"{path} is not valid JSON: {e}") from None


def _check_compatible(model: VLSeq2Seq, cfg: dict[str, Any], directory: Path) -> None:
    want_method = model.method.model_dump()
    if cfg["method"] != want_method:
        def differing(a: dict[str, Any], b: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v}" for k, v in a.items() if k != "method" and v != b.get(k))

        raise CheckpointMismatchError(
            f"checkpoint {directory} was made for method {cfg['method'].get('method')} "
            f"({differing(cfg['method'], want_method)}), but the model uses {want_method.get('method')} "
            f"({differing(want_method, cfg['method'])})")
    bb = cfg["backbone"]
    if bb["family"] != model.family or cfg["backbone_config"].get("d_model") != model.backbone.config.d_model:
        raise CheckpointMismatchError(
            f"checkpoint {directory} was made for backbone {bb['name']} ({bb['family']}, d_model "
            f"{cfg['backbone_config'].get('d_model')}), but the model is {model.info.name} ({model.family}, "
            f"d_model {model.backbone.config.d_model})")
    if cfg["visual"]["feat_dim"] != model.visual_config.feat_dim:
        raise CheckpointMismatchError(
            f"checkpoint {directory} expects visual features of dimension {cfg['visual']['feat_dim']}, "
            f"the model's projector takes {model.visual_config.feat_dim}")


def load_trainable(model: VLSeq2Seq, directory: str | os.PathLike[str]) -> VLSeq2Seq:
    """Load a checkpoint's weights into a model built for the same method/backbone (else a clear error)."""
    directory = Path(directory)
    cfg = read_config(directory)
    _check_compatible(model, cfg, directory)
    params = dict(model.named_parameters())
    trainable = load_tensors(directory / TRAINABLE_NAME)
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(trainable) != expected:
        missing, unexpected = sorted(expected - set(trainable)), sorted(set(trainable) - expected)
        raise CheckpointMismatchError(
            f"checkpoint {directory} does not match the model's trainable parameters: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    tensors: dict[str, torch.Tensor] = dict(trainable)
    frozen_path = directory / FROZEN_NAME
    if frozen_path.is_file():
        frozen = load_tensors(frozen_path)
        rows = frozen.pop("added_vocab_rows", None)
        tensors.update(frozen)
        if rows is not None:
            emb = model.backbone.get_input_embeddings()
            with torch.no_grad():
                emb.weight[emb.num_embeddings - rows.shape[0]:] = rows.to(emb.weight.dtype)
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise CheckpointMismatchError(f"checkpoint {directory} has tensors the model lacks: {unknown[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            target = params[name]
            if target.shape != value.shape:
                raise CheckpointMismatchError(
                    f"checkpoint {directory}: {name} has shape {tuple(value.shape)}, model has {tuple(target.shape)}")
            target.copy_(value.to(target.dtype))
    return model


def load_model(directory: str | os.PathLike[str], backbone: str | None = None) -> tuple[VLSeq2Seq, Any]:
    """Rebuild the model a checkpoint was saved from and load it. ``backbone`` overrides where the
    (pretrained) backbone is loaded from; by default the name recorded in the checkpoint."""
    from transformers import AutoTokenizer

    from vlpet.build import build_model

    directory = Path(directory)
    cfg = read_config(directory)
    method = TypeAdapter(MethodConfig).validate_python(cfg["method"])
    tok_dir = directory / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True) if tok_dir.is_dir() else None
    info = cfg["backbone"]
    name = backbone or info["name"]
    overrides: dict[str, Any] = {}
    if not info["pretrained"] and backbone is None:
        # Random backbone: rebuild the exact architecture recorded; its weights come from frozen_extra.
        keep = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                "encoder_ffn_dim", "decoder_ffn_dim", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
                "num_heads", "max_position_embeddings")
        overrides = {k: v for k, v in cfg["backbone_config"].items() if k in keep}
    model, tokenizer = build_model(name, method, tokenizer=tokenizer, visual=VisualConfig(**cfg["visual"]),
                                   weights="official" if info["pretrained"] else "random", vocab_size=cfg["vocab_size"],
                                   **overrides)
    return load_trainable(model, directory), tokenizer
