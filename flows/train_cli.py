"""``vlpet train``, ``vlpet evaluate`` and ``vlpet presets``: the ``train`` and ``evaluate`` stages (through the
executor, as the flows run them) on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)  # printed paths must stay whole for copy-paste


def _debug() -> bool:
    import os

    return os.environ.get("VLPET_DEBUG", "") not in ("", "0")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are JSON when they parse (``epochs=3``, ``tasks=["vqa"]``), else text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _checked_config(preset: str | None, config: Path | None, overrides: list[str], weights: str | None) -> Any:
    """The training config from a preset or a JSON file plus ``--set``/``--weights``; a bad value or backbone
    is a usage error naming the option (and the file's field) to fix."""
    from pydantic import ValidationError

    from flows.runs import load_train_config
    from vlpet.backbones import check_backbone_name

    hint = "--config" if config is not None else "--preset/--set"
    try:
        cfg = load_train_config(preset, config, {**parse_overrides(overrides),
                                                 **({"weights": weights} if weights is not None else {})})
    except (ValueError, ValidationError) as e:
        raise typer.BadParameter(str(e), param_hint=hint if weights is None else hint + "/--weights") from None
    try:
        check_backbone_name(cfg.backbone)
    except ValueError as e:
        where = f"{config}: field 'backbone'" if config is not None else "the config's field 'backbone'"
        raise typer.BadParameter(f"{where}: {e}", param_hint=hint + " (backbone=...)") from None
    return cfg


def train(
    data: Path = typer.Option(..., "--data", help="task tables directory (<task>/<split>.arrow), e.g. data/tasks"),
    out: Path = typer.Option(..., "--out", help="run directory (resumed when it holds a run of the same config)"),
    preset: str | None = typer.Option(None, help="a preset name (see `vlpet presets`)"),
    config: Path | None = typer.Option(None, help="a JSON training config instead of a preset"),
    overrides: list[str] = typer.Option([], "--set", help="override a config field: KEY=VALUE (repeatable)"),
    weights: str | None = typer.Option(None, "--weights", help="official (the config's default: the backbone's "
                                       "public checkpoint, downloaded into the Hugging Face cache on first use) | "
                                       "random (random init of the backbone architecture)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    evaluate: bool = typer.Option(True, help="evaluate on the test splits when training ends"),
    replace: bool = typer.Option(False, help="if --out holds a run of another config or data, move it aside "
                                             "(renamed *.replaced-<time>, kept) and train afresh"),
    progress: bool = typer.Option(True),
    root: Path | None = typer.Option(None, help="data root for cache and lineage (default: $VLPET_DATA_ROOT, "
                                                "else the parent of --data)"),
    force: bool = typer.Option(False, help="run even when the stage cache holds a valid result"),
) -> None:
    """Train a VL-PET (or baseline) preset on task tables (the ``train`` stage: cached, in the lineage); works
    under `torchrun` (DDP: every rank trains, rank 0 records)."""
    from features.store import StoreError
    from flows.stages import run_evaluate, run_train
    from vlpet.checkpoint import CheckpointCorruptError
    from vlpet.hub import WeightsUnavailableError
    from vlpet.train import dist_from_env

    cfg = _checked_config(preset, config, overrides, weights)
    main = dist_from_env().is_main
    try:
        result = run_train(cfg, root, out, tasks_dir=data, device=device, progress=progress, replace=replace,
                           force=force, record=main)
    except WeightsUnavailableError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except (StoreError, CheckpointCorruptError) as e:
        if _debug():
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, FileNotFoundError) as e:
        if _debug():
            raise
        raise typer.BadParameter(str(e), param_hint="--out/--data") from None
    t = result["train"]
    if not main:
        return
    state = ("already finished (nothing recomputed)" if result["cache_hit"] or result["skipped"]
             else f"{t['steps']} steps in {t['seconds']} s")
    console.print(f"trained {cfg.name}: {state}; loss {t['loss_first']} -> {t['loss_last']}; model {t['model_dir']}")
    console.print(f"lineage {result['lineage']} (`vlpet lineage {t['model_dir']}`)")
    if evaluate:
        print_metrics(run_evaluate(out, root, "test", tasks_dir=data, device=device, progress=progress))


def evaluate(
    run_dir: Path = typer.Argument(..., help="a training run directory"),
    split: str = typer.Option("test", help="test | val | a split name"),
    data: Path | None = typer.Option(None, "--data", help="task tables directory (default: the one trained on)"),
    device: str = typer.Option("auto"),
    progress: bool = typer.Option(True),
    root: Path | None = typer.Option(None, help="data root for cache and lineage (default: $VLPET_DATA_ROOT, "
                                                "else the parent of the task tables directory)"),
    force: bool = typer.Option(False, help="run even when the stage cache holds a valid result"),
) -> None:
    """Evaluate a run (the ``evaluate`` stage: cached, in the lineage): metrics.json, predictions per task,
    report.md with a loss-curve PNG."""
    from flows.stages import run_evaluate

    try:
        print_metrics(run_evaluate(run_dir, root, split, tasks_dir=data, device=device, progress=progress,
                                   force=force))
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e), param_hint="RUN_DIR") from None


def print_metrics(result: dict[str, Any]) -> None:
    table = Table(title=f"{result['run']} on {result['split']}")
    for col in ("task", "split", "metric", "score", "majority baseline", "n"):
        table.add_column(col, justify="left" if col in ("task", "split", "metric") else "right")
    for task, m in result["tasks"].items():
        base = m.get("majority_baseline", {}).get("score")
        table.add_row(task, m.get("split", ""), m["metric"], _fmt(m.get("score")), _fmt(base), str(m.get("n", "")))
    console.print(table)
    for note in result.get("notes", []):
        console.print(f"note: {note}")
    run = Path(result["run"])
    console.print(f"metrics: {run / 'metrics.json'}\nreport: {run / 'report.md'}")


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def presets(as_json: bool = typer.Option(False, "--json")) -> None:
    """The training presets and their main hyper-parameters."""
    from vlpet.train import PRESETS

    if as_json:
        typer.echo(json.dumps({k: v.model_dump(mode="json") for k, v in PRESETS.items()}, indent=1))
        return
    table = Table(title="training presets")
    for col in ("name", "backbone", "method", "tasks", "lr", "epochs", "batch"):
        table.add_column(col)
    for name, c in PRESETS.items():
        table.add_row(name, c.backbone, c.method, ",".join(c.tasks), f"{c.lr:g}", str(c.epochs), str(c.batch_size))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command()(presets)
