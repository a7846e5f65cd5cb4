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


@dataclass
class _FitRun:
    """One ``fit`` call's working state: what it trains with and where it stands (what a checkpoint records)."""

    optimizer: Any
    scheduler: Any
    scaler: Any
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    total: int
    autocast_dtype: torch.dtype | None = None
    resumed: Path | None = None
    epoch: int = 0
    start_batch: int = 0
    global_step: int = 0
    best: dict[str, Any] | None = None
    done: bool = False
    samples: int = 0
    first_loss: float | None = None
    last_loss: float | None = None
    task_last: dict[str, float] = field(default_factory=dict)
    writer: Any = None
    bar: Any = None
    log_handle: Any = None
    t_window: float = 0.0
    n_window: int = 0

    def close(self) -> None:
        for handle in (self.log_handle, self.writer, self.bar):
            if handle is not None:
                handle.close()


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
        """Train to the end of the schedule (resuming where the run directory's checkpoints stop)."""
        t_start = time.perf_counter()
        run = self._start()
        try:
            while run.epoch < self.cfg.epochs and not run.done:
                if self._train_epoch(run):
                    break  # max_steps reached mid-epoch; that position is checkpointed
                self._end_epoch(run)
        finally:
            run.close()
        model_dir = self._write_final_model(run.global_step)
        barrier(self.dist)
        return self._summarise(run, model_dir, time.perf_counter() - t_start)

    def _start(self) -> _FitRun:
        """Build the optimizer, scheduler and scaler, resume from the newest readable checkpoint, open the logs."""
        cfg = self.cfg
        if self.dist.is_main:
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
        self.model.to(self.device)
        optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.adam_eps, cfg.adam_betas)
        total = self.total_steps()
        scheduler = build_scheduler(optimizer, total, cfg.warmup_ratio)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        run = _FitRun(optimizer=optimizer, scheduler=scheduler, scaler=scaler, net=self.model, total=total)
        run.resumed, state = self._resume(optimizer, scheduler, scaler)
        if run.resumed is not None and state is not None:
            if state["extra"].get("config_digest") != config_digest(cfg):
                raise ValueError(f"{self.run_dir}: its checkpoint {run.resumed.name} was made with another training "
                                 "config; use a new --out directory (or delete this one) to train with this config")
            pos = state["position"]
            run.epoch, run.start_batch, run.global_step = pos["epoch"], pos["next_batch"], pos["global_step"]
            run.best = pos.get("best_val")
        losses_path = self.run_dir / "losses.jsonl"
        if self.dist.is_main:
            _truncate_log(losses_path, run.global_step)
        run.writer = self._writer(run.global_step)
        if self.dist.enabled:
            run.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        if self.precision in ("bf16", "fp16"):
            run.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        run.bar = self._bar(total, run.global_step)
        run.log_handle = open(losses_path, "a") if self.dist.is_main else None
        run.t_window = time.perf_counter()
        run.done = run.global_step >= total
        return run

    def _train_epoch(self, run: _FitRun) -> bool:
        """One epoch from ``run.start_batch``; True when it stopped early because the schedule ended."""
        cfg = self.cfg
        self.model.train()
        n_batches = self.source.num_batches(run.epoch)
        micro: list[tuple[str, float, int]] = []
        run.optimizer.zero_grad(set_to_none=True)
        i = run.start_batch - 1
        for i, batch in enumerate(self.source.batches(run.epoch, run.start_batch), start=run.start_batch):
            boundary = (i + 1) % cfg.grad_accum_steps == 0 or i + 1 == n_batches
            # micro-batches in this optimizer step (the last step of an epoch may have fewer)
            group = min(cfg.grad_accum_steps, n_batches - (i // cfg.grad_accum_steps) * cfg.grad_accum_steps)
            batch = batch.to(self.device)
            micro.append(self._forward_backward(run, batch, boundary, group))
            if not boundary:
                continue
            self._optimizer_step(run, micro, batch.task)
            micro = []
            end_of_epoch = i + 1 == n_batches
            if cfg.save_every_steps and run.global_step % cfg.save_every_steps == 0 and not end_of_epoch:
                if run.log_handle:
                    run.log_handle.flush()
                self._checkpoint(run, run.epoch, i + 1)
            if self.on_step:
                self.on_step(run.global_step)
            if run.done:
                break
        if run.done and i + 1 < n_batches:  # max_steps reached mid-epoch: record exactly that position
            self._checkpoint(run, run.epoch, i + 1)
            return True
        return False

    def _forward_backward(self, run: _FitRun, batch: VLBatch, boundary: bool, group: int) -> tuple[str, float, int]:
        """Accumulate one micro-batch's gradient (DDP syncs only on the step's last one); its (task, loss, size)."""
        sync = contextlib.nullcontext() if (boundary or not self.dist.enabled) else run.net.no_sync()
        autocast = (torch.autocast(self.device.type, dtype=run.autocast_dtype) if run.autocast_dtype is not None
                    else contextlib.nullcontext())
        with sync:
            with autocast:
                out = run.net(input_ids=batch.input_ids, vis_feats=batch.vis_feats,
                              attention_mask=batch.attention_mask, labels=batch.labels,
                              loss_weights=batch.loss_weights, vis_attention_mask=batch.vis_attention_mask)
            loss = out["loss"]
            run.scaler.scale(loss / group).backward()
        return batch.task, float(loss.detach()), len(batch)

    def _optimizer_step(self, run: _FitRun, micro: list[tuple[str, float, int]], task: str) -> None:
        """Clip, step, advance the schedule, then record the step's losses."""
        if self.cfg.clip_grad_norm:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        lr = run.scheduler.get_last_lr()[0]
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.global_step += 1
        self._record_step(run, micro, lr, task)
        run.done = run.global_step >= run.total

    def _record_step(self, run: _FitRun, micro: list[tuple[str, float, int]], lr: float, task: str) -> None:
        """losses.jsonl (one line per micro-batch), TensorBoard scalars and the progress bar."""
        step_loss = sum(loss_value for _, loss_value, _ in micro) / len(micro)
        step_samples = sum(n for _, _, n in micro) * self.dist.world_size
        run.samples += step_samples
        run.n_window += step_samples
        run.first_loss = step_loss if run.first_loss is None else run.first_loss
        run.last_loss = step_loss
        for micro_task, loss_value, _ in micro:
            run.task_last[micro_task] = loss_value
            if run.log_handle:
                run.log_handle.write(json.dumps({"step": run.global_step, "epoch": run.epoch, "task": micro_task,
                                                 "loss": round(loss_value, 6), "lr": lr}) + "\n")
        rate = run.n_window / max(time.perf_counter() - run.t_window, 1e-9)
        if run.writer and run.global_step % self.cfg.log_every_steps == 0:
            run.writer.add_scalar("loss/all", step_loss, run.global_step)
            for name, value in run.task_last.items():
                run.writer.add_scalar(f"loss/{name}", value, run.global_step)
            run.writer.add_scalar("lr", lr, run.global_step)
            run.writer.add_scalar("samples_per_s", rate, run.global_step)
        if run.bar is not None:
            run.bar.set_postfix(loss=f"{step_loss:.3f}", task=task, samples_s=f"{rate:.1f}")
            run.bar.update(1)

    def _end_epoch(self, run: _FitRun) -> None:
        """Move to the next epoch, validate (keeping the best model when selecting by validation), checkpoint."""
        run.epoch, run.start_batch = run.epoch + 1, 0
        if self.validate is not None and self.cfg.validate_every_epoch:
            result = self.validate(self.model, run.epoch - 1)
            if run.writer:
                run.writer.add_scalar("val/score", result["score"], run.global_step)
            if self.cfg.checkpoint_selection == "best-val" and (run.best is None
                                                                or result["score"] > run.best["score"]):
                run.best = {**result, "epoch": run.epoch - 1, "step": run.global_step}
                if self.dist.is_main:
                    save_checkpoint(self.model, self.run_dir / "best", tokenizer=self.tokenizer,
                                    extra={"best_val": run.best})
        if run.log_handle:
            run.log_handle.flush()
        self._checkpoint(run, run.epoch, 0)

    def _checkpoint(self, run: _FitRun, at_epoch: int, next_batch: int) -> None:
        """Checkpoint at an optimizer-step boundary: the run continues at (at_epoch, next_batch)."""
        self._save(run.optimizer, run.scheduler, run.scaler, {"epoch": at_epoch, "next_batch": next_batch,
                                                              "global_step": run.global_step, "best_val": run.best})

    def _write_final_model(self, global_step: int) -> Path:
        """``model/``: a copy of ``best/`` when selecting by validation (and one exists), else the last weights."""
        model_dir = self.run_dir / "model"
        if not self.dist.is_main:
            return model_dir
        if self.cfg.checkpoint_selection == "best-val" and (self.run_dir / "best").is_dir():
            tmp = self.run_dir / ".model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(self.run_dir / "best", tmp)
            shutil.rmtree(model_dir, ignore_errors=True)
            tmp.rename(model_dir)
        else:
            save_checkpoint(self.model, model_dir, tokenizer=self.tokenizer,
                            extra={"global_step": global_step, "selection": "last"})
        return model_dir

    def _summarise(self, run: _FitRun, model_dir: Path, seconds: float) -> TrainResult:
        """The run's ``TrainResult``, also written (rank 0) as ``train_summary.json``."""
        result = TrainResult(
            run_dir=str(self.run_dir), model_dir=str(model_dir), steps=run.global_step, total_steps=run.total,
            epochs_completed=run.epoch, samples=run.samples, seconds=round(seconds, 2),
            samples_per_s=round(run.samples / seconds, 2) if seconds else 0.0, loss_first=run.first_loss,
            loss_last=run.last_loss, loss_per_task_last=run.task_last,
            resumed_from=str(run.resumed) if run.resumed else None, selection=self.cfg.checkpoint_selection,
            best_val=run.best, precision=self.precision, device=str(self.device), world_size=self.dist.world_size)
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

