"""Training and evaluation runs on task tables: the plain functions behind ``vlpet train`` / ``vlpet evaluate``
and the ``train`` / ``evaluate`` flows.

They join the two halves the architecture keeps apart: ``pipelines.tasks`` (memory-mapped task tables, the
multi-task loader) and ``vlpet`` (model, trainer, generation, metrics). Nothing here imports Prefect.

A run directory holds ``config.json`` (the whole training config, backbone origin, data tables and
snapshot ids, trainable parameter names without weight decay), the trainer's files (``checkpoints/``,
``losses.jsonl``, ``tensorboard/``, ``model/``, ``train_summary.json``) and, after evaluation,
``metrics.json``, ``predictions/<task>.<split>.json``, ``report.md`` and ``loss.png``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from features.media import hash_file
from pipelines.tasks import ConcatTaskDataset, MultiTaskCollator, TaskDataset, multitask_loader, open_task_table
from pipelines.tasks.build import task_table_metadata
from vlpet.batch import TASK_FORMATS, format_input
from vlpet.train import DistInfo, TrainConfig, Trainer, dist_from_env, preset, read_losses, resolve_device
from vlpet.train.distributed import barrier, init_process_group

log = logging.getLogger(__name__)
CONFIG_FILE = "config.json"


# ---------------------------------------------------------------------------------------------- configs
def load_train_config(preset_name: str | None = None, config_file: str | Path | None = None,
                      overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A preset, or a JSON config file, with ``overrides`` on top (all validated by pydantic)."""
    if (preset_name is None) == (config_file is None):
        raise ValueError("give exactly one of a preset name or a config file")
    if config_file is not None:
        path = Path(config_file)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read training config {path}: {e}") from None
        if isinstance(data, dict) and isinstance(data.get("train"), dict):
            data = data["train"]  # a run directory's config.json works too
        if not isinstance(data, dict):
            raise ValueError(f"training config {path} must be a JSON object of config fields (see `vlpet presets "
                             f"--json`), not a JSON {type(data).__name__}")
        try:
            return TrainConfig.model_validate({**data, **(overrides or {})})
        except ValidationError as e:
            raise ValueError(f"training config {path}: {_validation_summary(e)}") from None
    try:
        return preset(preset_name, **(overrides or {}))
    except ValidationError as e:
        raise ValueError(f"preset {preset_name!r} with --set {dict(overrides or {})}: {_validation_summary(e)}"
                         ) from None


def _validation_summary(e: ValidationError) -> str:
    """Each pydantic error as "field: message (got value)", one line each."""
    parts = []
    for err in e.errors():
        field = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        parts.append(f"field {field!r}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- data
def table_path(tasks_dir: Path, task: str, split: str) -> Path:
    path = Path(tasks_dir) / task / f"{split}.arrow"
    if not path.is_file():
        raise FileNotFoundError(f"no task table {path} (task {task!r}, split {split!r}); build it with the "
                                "build-dataset flow or pipelines.tasks.build_task")
    return path


def eval_split(cfg: TrainConfig, task: str, which: str) -> str:
    """The table split ``which`` means for ``task``: ``val``/``test`` map through the config, else a split name."""
    return {"val": cfg.val_splits, "test": cfg.test_splits}.get(which, {}).get(task, which)


def train_datasets(tasks_dir: Path, cfg: TrainConfig) -> dict[str, TaskDataset | ConcatTaskDataset]:
    out: dict[str, TaskDataset | ConcatTaskDataset] = {}
    for task in cfg.tasks:
        splits = cfg.train_splits.get(task)
        if not splits:
            raise ValueError(f"config {cfg.name}: no train split for task {task!r} in train_splits")
        parts = [TaskDataset(table_path(tasks_dir, task, s), train=True, seed=cfg.loader_seed) for s in splits]
        out[task] = parts[0] if len(parts) == 1 else ConcatTaskDataset(parts)
    return out


def describe_tables(tasks_dir: Path, cfg: TrainConfig) -> dict[str, list[dict[str, str]]]:
    """Every train table of the run with its snapshot and source hash (saved in config.json, for lineage)."""
    out: dict[str, list[dict[str, str]]] = {}
    for task in cfg.tasks:
        for split in cfg.train_splits[task]:
            path = table_path(tasks_dir, task, split)
            meta = task_table_metadata(open_task_table(path).schema)
            out.setdefault(task, []).append({"split": split, "path": str(path.resolve()),
                                             "sha256": hash_file(path),
                                             "snapshot_id": meta.get("snapshot_id", ""),
                                             "source_sha256": meta.get("source_sha256", "")})
    return out


def _same_tables(run_dir: Path, tables: Mapping[str, list[dict[str, str]]]) -> bool:
    """Whether the run in ``run_dir`` trained on tables with exactly these contents."""
    saved = json.loads((run_dir / CONFIG_FILE).read_text()).get("train_tables", {})

    def digest(t: Mapping[str, list[dict[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        return {task: [(e["split"], e.get("sha256", "")) for e in entries] for task, entries in t.items()}

    return digest(saved) == digest(tables)


class LoaderBatchSource:
    """``vlpet.train.BatchSource`` over the memory-mapped multi-task loader (sharded by rank under DDP)."""

    def __init__(self, datasets: Mapping[str, Any], tokenizer: Any, cfg: TrainConfig, dist: DistInfo) -> None:
        self.loader = multitask_loader(datasets, tokenizer, cfg.batch_size, mode=cfg.multitask, seed=cfg.loader_seed,
                                       rank=dist.rank, world_size=dist.world_size, num_workers=cfg.num_workers,
                                       batch_sizes=cfg.task_batch_sizes, pin_memory=torch.cuda.is_available())
        self.sampler = self.loader.batch_sampler

    def num_batches(self, epoch: int) -> int:
        self.sampler.set_position(epoch, 0)
        return len(self.sampler)

    def batches(self, epoch: int, start: int = 0) -> Any:
        self.sampler.set_position(epoch, start)
        return iter(self.loader)


def corpus_texts(datasets: Mapping[str, Any]) -> list[str]:
    """The encoder inputs and targets of every training example (tokenizer/pre-training text)."""
    texts: list[str] = []
    for task, ds in datasets.items():
        fmt = TASK_FORMATS[task]
        parts = ds.parts if isinstance(ds, ConcatTaskDataset) else [ds]
        for part in parts:
            cols = {c: part.column(c) for c in ("text", "subs", "ts", "choices", "targets")}
            for i in range(part.n_rows):
                ex = {k: v[i] for k, v in cols.items()}
                ex["text"] = ex["text"] or ""
                texts.append(format_input(fmt, ex))
                texts.extend(ex["targets"] or [])
    return texts


def pretraining_max_length(tasks: Sequence[str]) -> int:
    """Tokens per text in the denoising pre-training: every input position fine-tuning feeds (the tasks'
    ``max_input_len``; video inputs run to ~120 tokens, and a cap of 64 left their question and choices on
    position embeddings that never trained), and never under the 64 the image presets were measured with
    (their inputs and targets are at most 40 tokens, so it changes nothing for them). An uncapped input
    (NLVR2, as upstream) adds no bound of its own: its statements are short and the 64 floor covers them."""
    return max(64, *(TASK_FORMATS[t].max_input_len or 0 for t in tasks))


def prepare_backbone(cfg: TrainConfig, datasets: Mapping[str, Any], run_dir: Path,
                     cache: Path | None = None) -> tuple[str, Any, dict | None]:
    """The backbone to build and its tokenizer. Pretrained weights (a directory, or the official checkpoint that
    ``ensure_backbone_weights`` fetched) are used as they are; a random backbone gets a BPE tokenizer trained
    on the data's text and, when ``cfg.pretrain`` is set, a short
    denoising pre-training (``vlpet.pretrain``), recorded in config.json and the model's origin. With a
    ``cache`` directory, a backbone pre-trained before on the same texts with the same settings and code is
    reused from it (``flows.backbone_cache``)."""
    from transformers.utils import logging as hf_logging

    from vlpet.backbones import architecture_config, has_official_weights
    from vlpet.pretrain import pretraining_record

    hf_logging.disable_progress_bar()  # per-file "Writing model shards" bars are noise in a training log

    if Path(cfg.backbone).expanduser().is_dir() or (cfg.weights == "official" and has_official_weights(cfg.backbone)):
        return cfg.backbone, None, pretraining_record(cfg.backbone)  # a vlpet-denoised directory says so
    family = "t5" if architecture_config(cfg.backbone).model_type == "t5" else "bart"
    out = run_dir / "backbone"
    if cfg.pretrain is not None and (record := pretraining_record(out)) is not None:
        return str(out), None, record  # made by an earlier attempt
    tok_dir = run_dir / "tokenizer"
    if cfg.pretrain is None and tok_dir.is_dir():  # trained by rank 0 / an earlier attempt: every rank shares it
        from transformers import AutoTokenizer

        return cfg.backbone, AutoTokenizer.from_pretrained(tok_dir, local_files_only=True), None
    texts = corpus_texts(datasets)
    if cfg.pretrain is None:
        tok = _corpus_tokenizer(texts, family, 2000)
        tok.save_pretrained(tok_dir)
        return cfg.backbone, tok, None
    return str(out), None, _pretrained_backbone(cfg, family, texts, out, cache)


def _corpus_tokenizer(texts: list[str], family: str, vocab_size: int) -> Any:
    from vlpet.tokenization import train_tokenizer

    return train_tokenizer(texts, family, vocab_size=vocab_size)


def _pretrained_backbone(cfg: TrainConfig, family: str, texts: list[str], out: Path, cache: Path | None) -> dict:
    """Denoising pre-training into ``out`` (its record), or a verified copy of the same backbone from ``cache``."""
    from flows import backbone_cache
    from vlpet.pretrain import denoising_pretrain, pretraining_record

    p = cfg.pretrain
    assert p is not None
    max_length = pretraining_max_length(cfg.tasks)
    key = None
    if cache is not None:
        key = _backbone_key(cfg, family, texts, max_length)
        if backbone_cache.restore(cache, key, out) and (record := pretraining_record(out)) is not None:
            log.info("reused the denoised backbone %s (same texts, settings and code) from %s", key[:12], cache)
            return record
    tok = _corpus_tokenizer(texts, family, p.tokenizer_vocab_size)
    record = denoising_pretrain(cfg.backbone, tok, texts, out, steps=p.steps, batch_size=p.batch_size, lr=p.lr,
                                mask_prob=p.mask_prob, seed=cfg.seed, dropout=cfg.dropout, max_length=max_length)
    if cache is not None and key is not None:
        backbone_cache.keep(cache, key, out)
    return record


def _backbone_key(cfg: TrainConfig, family: str, texts: list[str], max_length: int) -> str:
    """The cache key of a denoised backbone (``flows.caching.content_key``, like every stage's): its settings,
    the corpus and the code and libraries that pre-train it."""
    from flows.caching import code_version, content_key
    from vlpet.pretrain import texts_digest
    from vlpet.provenance import library_versions

    assert cfg.pretrain is not None
    params = {"backbone": cfg.backbone, "family": family, "pretrain": cfg.pretrain.model_dump(mode="json"),
              "seed": cfg.seed, "dropout": cfg.dropout, "max_length": max_length,
              "libraries": library_versions(("torch", "transformers", "tokenizers"))}
    return content_key("backbone", params, {"texts": texts_digest(texts), "code_version": code_version("vlpet")})


def ensure_backbone_weights(cfg: TrainConfig) -> None:
    """Fetch (or find in the cache) the official checkpoint ``cfg`` trains from, when it uses one; raises
    :class:`vlpet.hub.WeightsUnavailableError` naming what is missing."""
    from vlpet.backbones import fetch_backbone

    if cfg.weights == "official":
        fetch_backbone(cfg.backbone)


def feature_stats(datasets: Mapping[str, Any], max_examples: int = 256) -> tuple[list[float], list[float]]:
    """Per-dimension mean and std of the training features (every token/frame row of up to ``max_examples``
    evenly spaced examples per task), for ``feature_norm="standardize"``."""
    import numpy as np

    total, total_sq, n = None, None, 0
    for ds in datasets.values():
        step = max(1, len(ds) // max_examples)
        for i in range(0, len(ds), step):
            rows = np.asarray(ds.example(i)["vis"], dtype=np.float64)
            rows = rows.reshape(-1, rows.shape[-1])
            total = rows.sum(0) if total is None else total + rows.sum(0)
            total_sq = (rows ** 2).sum(0) if total_sq is None else total_sq + (rows ** 2).sum(0)
            n += rows.shape[0]
    if not n:
        raise ValueError("no training features to standardise")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0)) + 1e-6
    return mean.astype(np.float32).tolist(), std.astype(np.float32).tolist()


# ---------------------------------------------------------------------------------------------- train
def _existing_run(run_dir: Path, cfg: TrainConfig, tables: Any, replace: bool, dist: Any) -> dict[str, Any] | None:
    """What an existing run directory means for this training: its result when it finished with the same config
    and tables; None when training should (re)start or resume there, after moving a different run aside with
    ``replace`` (never deleted); an error naming what differs otherwise."""
    if not (run_dir / CONFIG_FILE).is_file():
        return None
    same_config, same_data = _same_config(run_dir, cfg), _same_tables(run_dir, tables)
    if same_config and same_data and (run_dir / "train_summary.json").is_file():
        return {"config": json.loads((run_dir / CONFIG_FILE).read_text()),
                "train": json.loads((run_dir / "train_summary.json").read_text()), "skipped": True}
    if not (same_config and same_data):
        what = "training config" if not same_config else "task tables (their content changed)"
        if not replace:
            raise ValueError(f"{run_dir} holds a run made with another {what}; choose a new --out directory "
                             "or pass replace=True (--replace) to move it aside and train afresh")
        if dist.is_main:
            aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
            run_dir.rename(aside)  # kept, never deleted: earlier results stay readable
            log.warning("%s: made with another %s; moved to %s", run_dir, what, aside)
        barrier(dist)
    return None


def _validator(cfg: TrainConfig, tok: Any, tasks_dir: Path, dev: Any) -> Any:
    """The per-epoch validation: the mean val score over the tasks (for keeping the best checkpoint)."""
    def validate(m: Any, epoch: int) -> dict[str, Any]:
        scores = evaluate_model(m, tok, cfg, tasks_dir, "val", device=dev, progress=False)
        values = [s["score"] for s in scores.values() if s.get("score") is not None]
        return {"score": sum(values) / len(values) if values else float("-inf"),
                "per_task": {t: s.get("score") for t, s in scores.items()}}
    return validate


def _run_config(cfg: TrainConfig, model: Any, pretraining: Any, tasks_dir: Path, tables: Any, device: str,
                world_size: int, data_notes: list[str] | None) -> dict[str, Any]:
    """The run's record (``config.json``): the config, the backbone and where its weights came from, the
    tables trained on, parameter counts, device and notes about the data."""
    from vlpet.params import count_parameters
    from vlpet.train import no_decay_names

    trainable, total = count_parameters(model)
    return {
        "train": cfg.model_dump(mode="json"),
        "backbone": model.info.as_dict(),
        "random_init_backbone": not model.info.pretrained or pretraining is not None,
        "backbone_pretraining": pretraining,
        "tasks_dir": str(tasks_dir.resolve()),
        "train_tables": tables,
        "trainable_params": trainable, "total_params": total,
        "no_weight_decay_params": no_decay_names(model),
        "feature_norm": cfg.feature_norm,
        "device": device, "world_size": world_size,
        "data_notes": list(data_notes or []),
    }


def train_run(cfg: TrainConfig, tasks_dir: str | Path, out: str | Path, *, device: str = "auto",
              progress: bool = True, on_step: Any = None, data_notes: list[str] | None = None,
              replace: bool = False, backbone_cache: Path | None = None) -> dict[str, Any]:
    """Train ``cfg`` on the task tables under ``tasks_dir`` into the run directory ``out``.

    An existing run directory made with the same config and the same table contents resumes from its
    latest checkpoint, or is returned as it is when it finished (nothing recomputed). One made with another
    config or other data is an error, unless ``replace``: then it is renamed aside (kept) and training
    starts afresh. ``backbone_cache``: where denoised backbones are kept for reuse (``prepare_backbone``).
    Works under ``torchrun`` (DDP)."""
    from vlpet.build import build_model

    tasks_dir, run_dir = Path(tasks_dir), Path(out)
    dist = dist_from_env()
    dev = resolve_device(device, dist.local_rank)
    init_process_group(dist, dev)
    tables = describe_tables(tasks_dir, cfg)
    ensure_backbone_weights(cfg)  # before anything is written: weights that cannot be had stop the run here
    finished = _existing_run(run_dir, cfg, tables, replace, dist)
    if finished is not None:
        return finished
    datasets = train_datasets(tasks_dir, cfg)
    for d in datasets.values():  # a corrupt feature store stops the run here, before anything is written
        for part in getattr(d, "parts", [d]):
            part.check_features()
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        backbone, tok, pretraining = prepare_backbone(cfg, datasets, run_dir, backbone_cache)
    barrier(dist)
    if not dist.is_main:
        backbone, tok, pretraining = prepare_backbone(cfg, datasets, run_dir)  # reads what rank 0 wrote
    from vlpet.model import VisualConfig

    visual = VisualConfig(feat_dim=cfg.feat_dim)
    if cfg.feature_norm == "standardize":
        visual.feat_mean, visual.feat_std = feature_stats(datasets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, tok = build_model(backbone, _method(cfg), feat_dim=cfg.feat_dim, tokenizer=tok, seed=cfg.seed,
                                 visual=visual, dropout=cfg.dropout, weights=cfg.weights)
    torch.manual_seed(cfg.seed)
    config = _run_config(cfg, model, pretraining, tasks_dir, tables, str(dev), dist.world_size, data_notes)
    if dist.is_main:
        _write_json(run_dir / CONFIG_FILE, config)
    source = LoaderBatchSource(datasets, tok, cfg, dist)
    validate = _validator(cfg, tok, tasks_dir, dev) if cfg.validate_every_epoch else None
    trainer = Trainer(model, cfg, source, run_dir, tokenizer=tok, device=dev, dist_info=dist, validate=validate,
                      on_step=on_step, progress=progress)
    result = trainer.fit()
    return {"config": config, "train": result.as_dict(), "skipped": False}


def _method(cfg: TrainConfig) -> Any:
    """The method config: the named method, with ``method_overrides`` validated on top."""
    from vlpet.config import method_config

    base = method_config(cfg.method)
    if not cfg.method_overrides:
        return base
    return type(base).model_validate({**base.model_dump(), **cfg.method_overrides})


def _same_config(run_dir: Path, cfg: TrainConfig) -> bool:
    from vlpet.train import config_digest

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return False
    saved = TrainConfig.model_validate(json.loads(path.read_text())["train"])
    return config_digest(saved) == config_digest(cfg)


def _write_json(path: Path, data: Any) -> None:
    from vlpet.evaluation import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------------------------------------- evaluate
def eval_examples(ds: TaskDataset) -> list[Any]:
    from vlpet.evaluation import EvalExample

    ids, targets = ds.column("example_id"), ds.column("targets")

    def optional(name: str) -> list[Any]:
        try:
            return ds.column(name)
        except KeyError:  # a table built before the column existed
            return [None] * len(ids)

    scores, raw = optional("scores"), optional("raw_answers")
    return [EvalExample(str(i), list(t or []), s, r) for i, t, s, r in zip(ids, targets, scores, raw, strict=True)]


def _train_examples(tasks_dir: Path, cfg: TrainConfig, task: str) -> list[Any]:
    out: list[Any] = []
    for split in cfg.train_splits[task]:
        out.extend(eval_examples(TaskDataset(table_path(tasks_dir, task, split), train=False)))
    return out


def evaluate_model(model: Any, tokenizer: Any, cfg: TrainConfig, tasks_dir: Path, which: str = "test", *,
                   device: Any = "cpu", progress: bool = False, predictions_dir: Path | None = None,
                   baselines: bool = False) -> dict[str, dict[str, Any]]:
    """Predict and score every task of ``cfg`` on its ``which`` split (``val`` or ``test``, or a split name).
    ``predict`` switches the model to eval mode and back."""
    from vlpet.evaluation import majority_baseline, predict, prediction_spread, score_task

    results: dict[str, dict[str, Any]] = {}
    for task in cfg.tasks:
        split = eval_split(cfg, task, which)
        ds = TaskDataset(table_path(tasks_dir, task, split), train=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.eval_batch_size, shuffle=False,
                                             collate_fn=MultiTaskCollator(tokenizer), num_workers=0)
        t0 = time.perf_counter()
        preds = predict(model, tokenizer, loader, device=device, overrides=cfg.generation.get(task),
                        progress=progress)
        examples = eval_examples(ds)
        # the validation rules (video QA: exact match) for the val split, the test rules otherwise
        role = "val" if which == "val" or (which != "test" and split == cfg.val_splits.get(task)) else "test"
        res = score_task(task, preds, examples, role=role)
        res.update(split=split, seconds=round(time.perf_counter() - t0, 2), **prediction_spread(preds))
        if baselines:
            res["majority_baseline"] = majority_baseline(task, _train_examples(tasks_dir, cfg, task), examples,
                                                         role=role)
        if predictions_dir is not None:
            _write_json(predictions_dir / f"{task}.{split}.json",
                        [{"example_id": e.example_id, "prediction": preds[e.example_id],
                          "targets": e.targets} for e in examples])
        results[task] = res
    return results


def evaluate_run(run_dir: str | Path, split: str = "test", *, tasks_dir: str | Path | None = None,
                 device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Evaluate a finished run's selected model: metrics.json, predictions, report.md and loss.png."""
    from vlpet.checkpoint import load_model
    from vlpet.evaluation import loss_curve_png, markdown_report, write_text_atomic

    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file() or not (run_dir / "model").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a finished training run (needs {CONFIG_FILE} and model/)")
    saved = json.loads(cfg_path.read_text())
    cfg = TrainConfig.model_validate(saved["train"])
    tasks_dir = Path(tasks_dir or saved["tasks_dir"])
    dev = resolve_device(device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, tok = load_model(run_dir / "model")
    model.to(dev)
    metrics = evaluate_model(model, tok, cfg, tasks_dir, split, device=dev, progress=progress,
                             predictions_dir=run_dir / "predictions", baselines=True)
    losses = read_losses(run_dir)
    png = run_dir / "loss.png"
    if losses.get("all"):
        loss_curve_png(losses, png)
    notes = _notes(saved)
    summary = json.loads((run_dir / "train_summary.json").read_text()) if (run_dir / "train_summary.json").is_file() \
        else {}
    if summary:
        notes.append(selection_note(summary))
    out = {"run": str(run_dir), "split": split, "tasks": metrics, "notes": notes, "train": summary,
           "seconds": round(time.perf_counter() - t0, 2), "device": str(dev)}
    _write_json(run_dir / "metrics.json", out)
    baselines = {t: m["majority_baseline"] for t, m in metrics.items()}
    text = markdown_report(f"{cfg.name}: evaluation on {split}", saved["train"], metrics, baselines, notes,
                           "loss.png" if png.is_file() else None)
    write_text_atomic(run_dir / "report.md", text)
    return out


def selection_note(summary: Mapping[str, Any]) -> str:
    """Which model the report evaluates: the best validation average (epoch and step) or the last one."""
    best = summary.get("best_val")
    if summary.get("selection") == "best-val" and best:
        return (f"Evaluated model: best validation average {best['score']:.4f} after epoch {best['epoch'] + 1} of "
                f"{summary.get('epochs_completed')} (step {best['step']}), as the official video trainer selects.")
    why = ("no validation score was recorded" if summary.get("selection") == "best-val"
           else "as the official image trainer keeps")
    return (f"Evaluated model: the last one (step {summary.get('steps')}, {summary.get('epochs_completed')} epochs), "
            f"{why}.")


def _notes(saved: Mapping[str, Any]) -> list[str]:
    notes = []
    bb = saved.get("backbone", {})
    if saved.get("backbone_pretraining"):
        p = saved["backbone_pretraining"]
        notes.append(f"Backbone: {p['origin']} ({p['steps']} steps, batch {p['batch_size']}, lr {p['lr']}); "
                     "not a public pretrained checkpoint, so the scores are not comparable to the paper's.")
    elif not bb.get("pretrained", True):
        notes.append(f"Backbone {bb.get('name')} has RANDOM weights (--weights random, or a test architecture "
                     "without public weights).")
    else:
        sha = f", model.safetensors sha256 {bb['sha256']}" if bb.get("sha256") else ""
        notes.append(f"Backbone {bb.get('name')}: {bb.get('origin', bb.get('source'))} ({bb.get('source')}{sha}).")
    notes.append("Scores are fractions (coco-caption scale for CIDEr), not x100 as in the paper's tables.")
    notes.extend(saved.get("data_notes") or [])
    return notes
