"""The multi-task training loop (docs/method.md §5): single-task batches, AdamW + linear warm-up/decay, clip 5.

The loop knows nothing about where batches come from: a ``BatchSource`` gives each epoch's ``VLBatch``es
from any position (the project's memory-mapped loader in ``pipelines.tasks``; a list in tests). That is
what makes resume exact: a checkpoint is only taken at an optimizer-step boundary and records (epoch,
next batch), the optimizer/scheduler/scaler states and every RNG; resuming restores them and asks the
source for the same epoch from that batch, so a killed and resumed run ends with bit-identical weights.

Run directory (written by rank 0 only):
``checkpoints/step-NNNNNNN/{model/, optimizer.safetensors, trainer_state.json, rng*.{safetensors,json}}``,
``checkpoints/LATEST``, ``losses.jsonl`` (step, epoch, task, loss, lr per micro-batch), ``tensorboard/``,
``best/`` (best validation average, when selected), ``model/`` (the selected final model),
``train_summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from vlpet.atomic import write_text_atomic as _write_atomic
from vlpet.batch import VLBatch
from vlpet.checkpoint import CheckpointCorruptError, load_trainable, save_checkpoint
from vlpet.model import VLSeq2Seq
from vlpet.train.config import TrainConfig
from vlpet.train.distributed import DistInfo, barrier
from vlpet.train.optim import build_optimizer, build_scheduler
from vlpet.train.state import load_trainer_state, save_trainer_state, write_rng

LATEST = "LATEST"
log = logging.getLogger(__name__)


class BatchSource(Protocol):
    """Where the loop's batches come from: deterministic per (epoch, position), for exact resume."""

    def num_batches(self, epoch: int) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterable[VLBatch]: ...


class ListBatchSource:
    """A fixed list of batches, identical every epoch (tests and toy runs)."""

    def __init__(self, batches: list[VLBatch]) -> None:
        self._batches = list(batches)

    def num_batches(self, epoch: int) -> int:
        return len(self._batches)

    def batches(self, epoch: int, start: int = 0) -> Iterable[VLBatch]:
        return iter(self._batches[start:])


@dataclass
class TrainResult:
    run_dir: str
    model_dir: str
    steps: int
    total_steps: int
    epochs_completed: int
    samples: int
    seconds: float
    samples_per_s: float
    loss_first: float | None
    loss_last: float | None
    loss_per_task_last: dict[str, float] = field(default_factory=dict)
    resumed_from: str | None = None
    selection: str = "last"
    best_val: dict[str, Any] | None = None
    precision: str = "fp32"
    device: str = "cpu"
    world_size: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: fp32 on the CPU (bf16 is 3-10x slower on these CPUs), bf16 autocast on a GPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


class Trainer:
    """Train ``model`` on ``source`` for ``cfg``; ``fit()`` resumes from the run directory's latest checkpoint.

    ``validate(model, epoch) -> {"score": float, ...}`` is called at each epoch end when the config asks
    for per-epoch validation (video presets: the best average of the validation scores is kept).
    ``on_step(step)`` is called after every optimizer step (after any checkpoint of that step).
    """

    def __init__(self, model: VLSeq2Seq, cfg: TrainConfig, source: BatchSource, run_dir: str | Path, *,
                 tokenizer: Any = None, device: torch.device | str = "cpu", dist_info: DistInfo | None = None,
                 validate: Callable[[VLSeq2Seq, int], dict[str, Any]] | None = None,
                 on_step: Callable[[int], None] | None = None, progress: bool = True,
                 tensorboard: bool = True) -> None:
        self.model = model
        self.cfg = cfg
        self.source = source
        self.run_dir = Path(run_dir)
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.validate = validate
        self.on_step = on_step
        self.progress = progress
        self.tensorboard = tensorboard
        self.precision = resolve_precision(cfg.precision, self.device)
        self.ckpt_root = self.run_dir / "checkpoints"

    # ------------------------------------------------------------------ schedule
    def steps_per_epoch(self, epoch: int = 0) -> int:
        return math.ceil(self.source.num_batches(epoch) / self.cfg.grad_accum_steps)

    def total_steps(self) -> int:
        full = sum(self.steps_per_epoch(e) for e in range(self.cfg.epochs))
        return min(full, self.cfg.max_steps) if self.cfg.max_steps else full

    # ------------------------------------------------------------------ checkpoints
    def latest_checkpoint(self) -> Path | None:
        marker = self.ckpt_root / LATEST
        if not marker.is_file():
            return None
        path = self.ckpt_root / marker.read_text().strip()
        return path if (path / "model").is_dir() else None

    def resume_candidates(self) -> list[Path]:
        """The checkpoint LATEST names, then the older kept ones, newest first: resume falls back along them
        when a checkpoint's files turn out corrupt."""
        latest = self.latest_checkpoint()
        if latest is None:
            return []
        older = sorted((p for p in self.ckpt_root.glob("step-*") if p.is_dir() and (p / "model").is_dir()
                        and p.name < latest.name), reverse=True)
        return [latest, *older]

    def _resume(self, optimizer: Any, scheduler: Any, scaler: Any) -> tuple[Path | None, dict[str, Any] | None]:
        """Load the newest readable checkpoint; a corrupt one is reported (naming its file) and skipped."""
        errors: list[str] = []
        for cand in self.resume_candidates():
            try:
                load_trainable(self.model, cand / "model")
                state = load_trainer_state(cand, optimizer, scheduler, scaler,
                                           rng_suffix=f"-rank{self.dist.rank}" if self.dist.rank else "")
            except CheckpointCorruptError as e:
                errors.append(str(e))
                log.warning("%s; resuming from the previous kept checkpoint instead", e)
                continue
            return cand, state
        if errors:
            raise CheckpointCorruptError(f"{self.run_dir}: no kept checkpoint can be read ({'; '.join(errors)}); "
                                         f"delete {self.ckpt_root} to train from the start")
        return None, None

    def _save(self, optimizer: Any, scheduler: Any, scaler: Any, position: dict[str, Any]) -> None:
        """Rank 0 writes a staging dir (every rank adds its RNG state), renames it, then moves LATEST."""
        name = f"step-{position['global_step']:07d}"
        staging = self.ckpt_root / f".staging-{name}"
        if self.dist.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        barrier(self.dist)
        if not self.dist.is_main:
            write_rng(staging, f"-rank{self.dist.rank}")
        barrier(self.dist)
        if self.dist.is_main:
            save_checkpoint(self.model, staging / "model", tokenizer=self.tokenizer,
                            extra={"global_step": position["global_step"], "run": self.cfg.name})
            save_trainer_state(staging, optimizer, scheduler, scaler, position,
                               extra={"config_digest": config_digest(self.cfg)})
            final = self.ckpt_root / name
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            _write_atomic(self.ckpt_root / LATEST, name + "\n")
            keep = sorted(p for p in self.ckpt_root.glob("step-*") if p.is_dir())
            for old in keep[:-self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.dist)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        cfg = self.cfg
        t_start = time.perf_counter()
        if self.dist.is_main:
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
        self.model.to(self.device)
        optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.adam_eps, cfg.adam_betas)
        total = self.total_steps()
        scheduler = build_scheduler(optimizer, total, cfg.warmup_ratio)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        epoch, start_batch, global_step = 0, 0, 0
        best: dict[str, Any] | None = None
        resumed, state = self._resume(optimizer, scheduler, scaler)
        if resumed is not None and state is not None:
            if state["extra"].get("config_digest") != config_digest(cfg):
                raise ValueError(f"{self.run_dir}: its checkpoint {resumed.name} was made with another training "
                                 "config; use a new --out directory (or delete this one) to train with this config")
            pos = state["position"]
            epoch, start_batch, global_step = pos["epoch"], pos["next_batch"], pos["global_step"]
            best = pos.get("best_val")
        losses_path = self.run_dir / "losses.jsonl"
        if self.dist.is_main:
            _truncate_log(losses_path, global_step)
        writer = self._writer(global_step)
        net: nn.Module = self.model
        if self.dist.enabled:
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16"
                                   else torch.float16) if self.precision in ("bf16", "fp16") else None)
        accum = cfg.grad_accum_steps
        samples = 0
        first_loss: float | None = None
        last_loss: float | None = None
        task_last: dict[str, float] = {}
        bar = self._bar(total, global_step)
        log_handle = open(losses_path, "a") if self.dist.is_main else None
        t_window, n_window = time.perf_counter(), 0
        done = global_step >= total

        def save(at_epoch: int, next_batch: int) -> None:
            """Checkpoint at an optimizer-step boundary: the run continues at (at_epoch, next_batch)."""
            self._save(optimizer, scheduler, scaler, {"epoch": at_epoch, "next_batch": next_batch,
                                                      "global_step": global_step, "best_val": best})

        try:
            while epoch < cfg.epochs and not done:
                self.model.train()
                n_batches = self.source.num_batches(epoch)
                micro: list[tuple[str, float, int]] = []
                optimizer.zero_grad(set_to_none=True)
                i = start_batch - 1
                for i, batch in enumerate(self.source.batches(epoch, start_batch), start=start_batch):
                    boundary = (i + 1) % accum == 0 or i + 1 == n_batches
                    group = min(accum, n_batches - (i // accum) * accum)  # micro-batches in this step
                    batch = batch.to(self.device)
                    sync = contextlib.nullcontext() if (boundary or not self.dist.enabled) else net.no_sync()
                    with sync:
                        with autocast or contextlib.nullcontext():
                            out = net(input_ids=batch.input_ids, vis_feats=batch.vis_feats,
                                      attention_mask=batch.attention_mask, labels=batch.labels,
                                      loss_weights=batch.loss_weights, vis_attention_mask=batch.vis_attention_mask)
                        loss = out["loss"]
                        scaler.scale(loss / group).backward()
                    micro.append((batch.task, float(loss.detach()), len(batch)))
                    if not boundary:
                        continue
                    if cfg.clip_grad_norm:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    lr = scheduler.get_last_lr()[0]
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    global_step += 1
                    step_loss = sum(loss_value for _, loss_value, _ in micro) / len(micro)
                    step_samples = sum(n for _, _, n in micro) * self.dist.world_size
                    samples += step_samples
                    n_window += step_samples
                    first_loss = step_loss if first_loss is None else first_loss
                    last_loss = step_loss
                    for task, loss_value, _ in micro:
                        task_last[task] = loss_value
                        if log_handle:
                            log_handle.write(json.dumps({"step": global_step, "epoch": epoch, "task": task,
                                                         "loss": round(loss_value, 6), "lr": lr}) + "\n")
                    micro = []
                    if writer and global_step % cfg.log_every_steps == 0:
                        writer.add_scalar("loss/all", step_loss, global_step)
                        for task, value in task_last.items():
                            writer.add_scalar(f"loss/{task}", value, global_step)
                        writer.add_scalar("lr", lr, global_step)
                        elapsed = time.perf_counter() - t_window
                        writer.add_scalar("samples_per_s", n_window / max(elapsed, 1e-9), global_step)
                    if bar is not None:
                        elapsed = time.perf_counter() - t_window
                        bar.set_postfix(loss=f"{step_loss:.3f}", task=batch.task,
                                        samples_s=f"{n_window / max(elapsed, 1e-9):.1f}")
                        bar.update(1)
                    done = global_step >= total
                    end_of_epoch = i + 1 == n_batches
                    if cfg.save_every_steps and global_step % cfg.save_every_steps == 0 and not end_of_epoch:
                        if log_handle:
                            log_handle.flush()
                        save(epoch, i + 1)
                    if self.on_step:
                        self.on_step(global_step)
                    if done:
                        break
                if done and i + 1 < n_batches:  # max_steps reached mid-epoch: record exactly that position
                    save(epoch, i + 1)
                    break
                epoch, start_batch = epoch + 1, 0
                if self.validate is not None and cfg.validate_every_epoch:
                    result = self.validate(self.model, epoch - 1)
                    if writer:
                        writer.add_scalar("val/score", result["score"], global_step)
                    if cfg.checkpoint_selection == "best-val" and (best is None or result["score"] > best["score"]):
                        best = {**result, "epoch": epoch - 1, "step": global_step}
                        if self.dist.is_main:
                            save_checkpoint(self.model, self.run_dir / "best", tokenizer=self.tokenizer,
                                            extra={"best_val": best})
                if log_handle:
                    log_handle.flush()
                save(epoch, 0)
        finally:
            if log_handle:
                log_handle.close()
            if writer:
                writer.close()
            if bar is not None:
                bar.close()
        model_dir = self.run_dir / "model"
        if self.dist.is_main:
            if cfg.checkpoint_selection == "best-val" and (self.run_dir / "best").is_dir():
                src = self.run_dir / "best"
                tmp = self.run_dir / ".model.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp)
                shutil.rmtree(model_dir, ignore_errors=True)
                tmp.rename(model_dir)
            else:
                save_checkpoint(self.model, model_dir, tokenizer=self.tokenizer,
                                extra={"global_step": global_step, "selection": "last"})
        barrier(self.dist)
        seconds = time.perf_counter() - t_start
        result = TrainResult(
            run_dir=str(self.run_dir), model_dir=str(model_dir), steps=global_step, total_steps=total,
            epochs_completed=epoch, samples=samples, seconds=round(seconds, 2),
            samples_per_s=round(samples / seconds, 2) if seconds else 0.0, loss_first=first_loss,
            loss_last=last_loss, loss_per_task_last=task_last,
            resumed_from=str(resumed) if resumed else None, selection=cfg.checkpoint_selection, best_val=best,
            precision=self.precision, device=str(self.device), world_size=self.dist.world_size)
        if self.dist.is_main:
            _write_atomic(self.run_dir / "train_summary.json", json.dumps(result.as_dict(), indent=2))
        return result

    def _writer(self, global_step: int) -> Any:
        if not (self.tensorboard and self.dist.is_main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=global_step or None)

    def _bar(self, total: int, initial: int) -> Any:
        if not (self.progress and self.dist.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=f"train {self.cfg.name}", unit="step", dynamic_ncols=True)


def config_digest(cfg: TrainConfig) -> str:
    """What must not change between a checkpoint and its resume (every field but cosmetic ones)."""
    import hashlib

    data = cfg.model_dump(exclude={"description", "num_workers", "log_every_steps", "eval_batch_size",
                                   "generation", "keep_checkpoints", "test_splits"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _truncate_log(path: Path, global_step: int) -> None:
    """Drop log lines past the resumed step (they belong to the part of the run that was lost)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = []
    for ln in lines:
        try:
            if json.loads(ln)["step"] <= global_step:
                kept.append(ln)
        except (json.JSONDecodeError, KeyError):
            break  # a torn last line from a kill
    _write_atomic(path, "".join(k + "\n" for k in kept))


def read_losses(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``losses.jsonl`` as task → [(step, loss)], plus ``all`` = the per-step mean."""
    per_task: dict[str, list[tuple[int, float]]] = defaultdict(list)
    per_step: dict[int, list[float]] = defaultdict(list)
    path = Path(run_dir) / "losses.jsonl"
    if path.is_file():
        for ln in path.read_text().splitlines():
            if not ln.strip():
                continue
            rec = json.loads(ln)
            per_task[rec["task"]].append((rec["step"], rec["loss"]))
            per_step[rec["step"]].append(rec["loss"])
    out = dict(per_task)
    out["all"] = [(s, sum(v) / len(v)) for s, v in sorted(per_step.items())]
    return out

