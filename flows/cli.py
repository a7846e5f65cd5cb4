"""The ``vlpet`` console script: every package's commands on one typer app.

Each package exposes ``register(app)``; only this module (in ``flows``, the top of the dependency order)
sees them all, so ``vlpet`` stays free of ``pipelines``/``features``/``flows`` imports.
"""

from __future__ import annotations

from pathlib import Path

import typer

from features.cli import register as register_feature_commands
from pipelines.cli import register as register_pipeline_commands
from vlpet.cli import register as register_model_commands

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="VL-PET: from raw vision-and-language media to an evaluated parameter-efficient model.")
register_model_commands(app)
register_pipeline_commands(app)
register_feature_commands(app)


@app.command()
def demo(
    workdir: Path = typer.Option(Path("demo-output"), help="where data, tables, checkpoint and report go"),
    scale: str = typer.Option("demo", help="synthetic data scale: tiny | demo"),
    seed: int = typer.Option(0),
) -> None:
    """Run the end-to-end demo on embedded synthetic data, as far as the pipeline is wired today."""
    from flows.demo import NOT_WIRED, run_demo
    from vlpet.cli import console, print_model_report

    console.print("[bold]vlpet demo[/bold]: synthetic data in upstream formats -> file:// mirror -> verified "
                  "download -> unified tables -> CLIP feature stores -> task tables; then the model library on "
                  "synthetic features. "
                  f"Not wired yet: {'; '.join(NOT_WIRED)}.")
    report = run_demo(workdir, scale=scale, seed=seed)
    for name, d in report["datasets"].items():
        tables = ", ".join(f"{k} {v}" for k, v in d["tables"].items())
        console.print(f"  {name:<7} {d['files']} files verified; tables: {tables}; media {d['media_present']} "
                      f"(coverage {d['media_coverage']:.0%})")
    for kind, st in report["feature_stores"].items():
        console.print(f"  features ({kind}): {st['media']} media -> {st['store']} ({st['extracted']} extracted, "
                      f"{st['reused']} reused, {st['quarantined']} quarantined; random-init CLIP weights: "
                      f"{st['random_init_weights']})")
    for task, splits in report["task_tables"].items():
        desc = ", ".join(f"{k} {v['rows']}" + (f" (-{v['excluded']})" if v["excluded"] else "")
                         for k, v in splits.items())
        console.print(f"  task {task:<7} {desc}")
    print_model_report(report["model"], workdir / "model")
    console.print(f"stage timings (s): {report['timings_s']}")
    console.print(f"report: {workdir / 'report.json'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
