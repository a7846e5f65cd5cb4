"""The model library's commands (``params``, ``demo``), registered on the ``vlpet`` command line.

The console script itself is ``flows.cli:app``, which composes every package's commands; ``vlpet`` never
imports the other packages. ``app`` here is a standalone app with only these commands (for tests and for
users of the library alone).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)  # printed paths must stay whole for copy-paste


def params(
    backbone: str = typer.Option("bart-base", help="bart-base | t5-base | tiny-bart | tiny-t5 | a local directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON list of objects"),
    transfer: bool = typer.Option(False, help="also list the paper's Table 9 transfer designs"),
    feat_dim: int = typer.Option(2048, help="visual feature dimension (2048 CLIP RN101 grid, 512 video)"),
) -> None:
    """Trainable and total parameters of every method, built offline from the architecture config."""
    from vlpet.config import PAPER_METHODS, TRANSFER_METHODS
    from vlpet.params import method_param_counts

    logging.getLogger("vlpet").setLevel(logging.ERROR)
    methods = PAPER_METHODS + (TRANSFER_METHODS if transfer else ())
    try:
        counts = method_param_counts(backbone, methods, feat_dim=feat_dim)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--backbone") from e
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in counts]))
        return
    table = Table(title=f"Parameters on {backbone} (feat_dim {feat_dim}; % of the whole model, as the paper)")
    for col in ("method", "trainable", "total", "%"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for c in counts:
        table.add_row(c.method, f"{c.trainable:,}", f"{c.total:,}", f"{c.percent:.2f}")
    console.print(table)


def model_demo(
    workdir: Path = typer.Option(Path("demo-output/model"), help="where the report and checkpoint go"),
    steps: int = typer.Option(60, help="training steps"),
    seed: int = typer.Option(0),
) -> None:
    """The model library alone on synthetic features (part of ``vlpet demo``)."""
    from vlpet.demo import run_demo

    report = run_demo(workdir, steps=steps, seed=seed)
    print_model_report(report, workdir)


def print_model_report(report: dict, workdir: Path) -> None:
    console.print(f"ran: {report['what_ran']}")
    console.print(f"trainable {report['trainable_params']:,} / {report['total_params']:,} parameters; "
                  f"loss {report['loss_first']} -> {report['loss_last']} over {report['steps']} steps")
    console.print(f"held-out accuracy {report['heldout_accuracy']:.3f} (majority baseline "
                  f"{report['majority_baseline']:.3f}); checkpoint reload reproduces generations: "
                  f"{report['reload_reproduces_generations']}")
    console.print(f"model report: {Path(workdir) / 'report.json'}\ncheckpoint: {report['checkpoint']}\n"
                  f"lineage: none for this library-only demo (`vlpet demo` records it)\ntook {report['seconds']} s")


def register(app: typer.Typer) -> None:
    """Add the model library's commands to ``app``."""
    app.command()(params)
    app.command(name="model-demo")(model_demo)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="vlpet model library commands.")
register(app)
