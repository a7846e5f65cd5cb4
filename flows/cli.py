"""The ``vlpet`` console script: every package's commands on one typer app.

Each package exposes ``register(app)``; only this module (in ``flows``, the top of the dependency order)
sees them all, so ``vlpet`` stays free of ``pipelines``/``features``/``flows`` imports.
"""

from __future__ import annotations

from pathlib import Path

import typer

from features.cli import register as register_feature_commands
from flows.ops_cli import register as register_ops_commands
from flows.stage_cli import register as register_stage_commands
from flows.train_cli import register as register_train_commands
from flows.weights_cli import register as register_weights_commands
from pipelines.cli import register as register_pipeline_commands
from vlpet.cli import register as register_model_commands

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="VL-PET: from raw vision-and-language media to an evaluated parameter-efficient model.")


@app.callback()
def _global_options(debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error "
                                               "(bad input is otherwise reported in one line)")) -> None:
    import os

    if debug:
        os.environ["VLPET_DEBUG"] = "1"


register_model_commands(app)
register_pipeline_commands(app)
register_feature_commands(app)
register_stage_commands(app)
register_ops_commands(app)
register_train_commands(app)
register_weights_commands(app)


def prefect_env(workdir: Path) -> None:
    """Prefect settings for a local, serverless run (docs/operations.md): its state under the workdir, not ``$HOME``;
    analytics off; a start-up timeout a loaded 2-core machine meets; stage messages (INFO) recorded in the run's logs
    while the terminal shows only warnings. Values the user set are kept."""
    import os

    defaults = {"PREFECT_HOME": str(Path(workdir).resolve() / ".prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
                "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # the ephemeral server's SQLite lives there


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo-output"), help="where data, stores, runs and the report go"),
    scale: str = typer.Option("demo", help="synthetic data scale: demo | tiny (tiny = CI-sized, a few steps)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    backbone: str | None = typer.Option(
        None, help="a pretrained BART/T5 for both presets: a local directory, or bart-base / t5-base (default with "
                   "--weights official: bart-base; with --weights random: tiny-bart denoised on the synthetic text)"),
    weights: str = typer.Option(
        "official", "--weights", help="official: OpenAI's CLIP and a pretrained backbone, downloaded into the "
                                      "Hugging Face cache on first use | random: random CLIP and tiny-bart, offline "
                                      "and fast (what `make demo` runs)"),
) -> None:
    """The whole pipeline on embedded synthetic data, as the Prefect flow ``end-to-end`` (ephemeral mode)."""
    from flows.demo import demo_backbone, demo_overrides, ensure_clip_weights
    from vlpet.cli import console
    from vlpet.hub import WeightsUnavailableError, check_weights

    try:
        check_weights(weights)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--weights") from None
    try:
        # weights that cannot be had, or a backbone without any, stop here: before anything is written
        demo_overrides(scale, demo_backbone(backbone, weights), weights=weights)
        ensure_clip_weights(weights)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--backbone") from None
    except WeightsUnavailableError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    prefect_env(workdir)
    from flows.end_to_end import end_to_end_flow

    console.print("[bold]vlpet demo[/bold]: synthetic data in upstream formats -> file:// mirror -> verified "
                  "download -> unified tables -> CLIP feature stores -> task tables -> VL-PET training (image and "
                  "video presets) -> evaluation against the majority baseline; every stage cached and in the lineage.")
    state = end_to_end_flow(workdir=str(workdir), scale=scale, seed=seed, device=device, backbone=backbone,
                            weights=weights, return_state=True)
    report = state.result()
    from flows.observe import wait_for_task_runs

    wait_for_task_runs(state.state_details.flow_run_id, report["stage_runs"])  # before the server stops
    for task, v in report["tasks"].items():
        score = "-" if v["score"] is None else f"{v['score']:.4f}"
        base = "-" if v["majority_baseline"] is None else f"{v['majority_baseline']:.4f}"
        verdict = "beats it" if report["beats_majority_baseline"][task] else "does NOT beat it"
        if report.get("constant_output", {}).get(task):
            verdict += f"; constant output: {v['top_prediction_share']:.0%} of answers are one prediction"
        console.print(f"  {task:<7} {v['metric']:<13} {score:>8}  majority baseline {base:>8}  ({verdict})")
    for note in report["notes"]:
        console.print(f"note: {note}")
    console.print(f"weights: --weights {weights}; CLIP {report['weights']['clip']}")
    console.print(f"stage timings (s): {report['timings_s']}")
    console.print(f"cache hits: {report['cache_hits']}")
    console.print(f"report: {Path(report['workdir']) / 'report.json'} and {Path(report['workdir']) / 'report.md'}")
    console.print(f"lineage: {report['lineage_file']} (root {report['lineage_root']}; "
                  f"`vlpet lineage {report['lineage_root']} --root {Path(report['workdir']) / 'data'}`)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
