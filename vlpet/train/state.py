"""Trainer state on disk without pickle: optimizer/scaler tensors in safetensors, everything else in JSON.

A resumable checkpoint needs, beyond the trainable weights (``vlpet.checkpoint``): the optimizer's moments
and step counts, the scheduler's position, the AMP scaler, every RNG the run draws from (torch CPU/CUDA
for dropout, Python ``random``, numpy) and the data position (epoch, next batch). ``torch.save`` would
pickle; the project loads nothing it would have to unpickle, so tensors go to safetensors and the rest
to JSON (Python's Mersenne-Twister state is a tuple of ints, numpy's a uint32 array: both JSON-able).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from vlpet.checkpoint import CheckpointCorruptError, load_tensors

OPTIMIZER_TENSORS = "optimizer.safetensors"
STATE_JSON = "trainer_state.json"
RNG_TENSORS = "rng.safetensors"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named tensors and a JSON-able remainder."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, per_param in sd["state"].items():
        meta: dict[str, Any] = {}
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().contiguous().cpu()
                meta[key] = "tensor"
            else:
                meta[key] = value
        state_meta[str(idx)] = meta
    return tensors, {"state": state_meta, "param_groups": sd["param_groups"]}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for idx, per_param in meta["state"].items():
        state[int(idx)] = {k: (tensors[f"{idx}.{k}"] if v == "tensor" else v) for k, v in per_param.items()}
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
            len(g["params"]) != len(h["params"]) for g, h in zip(groups, optimizer.param_groups, strict=True)):
        saved = [len(g["params"]) for g in groups]
        have = [len(g["params"]) for g in optimizer.param_groups]
        raise ValueError(f"the saved optimizer state has other parameter groups than this model's ({saved} vs {have})")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state as (tensors, JSON)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_trainer_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                       position: dict[str, Any], extra: dict[str, Any] | None = None, rng_suffix: str = "") -> None:
    """Write the optimizer, scheduler, scaler, RNG and position files into ``directory`` (a staging dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    save_file(opt_tensors, directory / OPTIMIZER_TENSORS)
    write_rng(directory, rng_suffix)
    state = {"optimizer": opt_meta, "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
             "position": position, "extra": extra or {}}
    (directory / STATE_JSON).write_text(json.dumps(state, indent=1, default=_jsonable))


def write_rng(directory: Path, suffix: str = "") -> None:
    rng_tensors, rng_meta = capture_rng()
    save_file(rng_tensors, directory / f"rng{suffix}.safetensors")
    (directory / f"rng{suffix}.json").write_text(json.dumps(rng_meta))


def load_trainer_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                       rng_suffix: str = "") -> dict[str, Any]:
    """Restore everything ``save_trainer_state`` wrote; returns the JSON state (position, extra)."""
    state_path = directory / STATE_JSON
    if not state_path.is_file():
        raise FileNotFoundError(f"{directory} is not a resumable checkpoint: {STATE_JSON} is missing")
    try:
        state = json.loads(state_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointCorruptError(f"checkpoint file {state_path} is not valid JSON: {e}") from None
    optimizer_from_files(optimizer, load_tensors(directory / OPTIMIZER_TENSORS), state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") and scaler is not None:
        scaler.load_state_dict(state["scaler"])
    rng_file = directory / f"rng{rng_suffix}.safetensors"
    if not rng_file.is_file():
        rng_file, rng_suffix = directory / RNG_TENSORS, ""
    rng_json = directory / f"rng{rng_suffix}.json"
    try:
        rng_meta = json.loads(rng_json.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointCorruptError(f"checkpoint file {rng_json} cannot be read: {e}") from None
    restore_rng(load_tensors(rng_file), rng_meta)
    return state


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
