"""The ``pipelines`` commands on the ``vlpet`` command line (``vlpet synth``; ``download`` and ``prepare`` are
stage commands in ``flows.stage_cli``: they run through the stage executor, which caches and records lineage).

``flows.cli`` composes every package's ``register(app)``; this module only adds its own commands and
imports its implementation lazily, so ``vlpet --help`` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="output directory (the mirror layout <out>/<source>/<file>)"),
    scale: str = typer.Option("tiny", help="tiny (test fixture, seconds) | demo (demo data, < 1 minute)"),
    seed: int = typer.Option(0, help="same seed -> byte-identical files"),
) -> None:
    """Write the synthetic mini-datasets (all sources, exact upstream formats) and their manifest."""
    from pipelines.synth import generate
    from pipelines.synth.config import SCALES

    if scale not in SCALES:
        raise typer.BadParameter(f"choose one of {', '.join(SCALES)}", param_hint="--scale")
    started = time.perf_counter()
    manifest = generate(out, scale=scale, seed=seed)  # type: ignore[arg-type]
    took = time.perf_counter() - started
    typer.echo(f"synthetic data ({scale}, seed {seed}) written to {Path(out).resolve()}")
    for source, totals in manifest.totals().items():
        splits = ", ".join(f"{split} {numbers.get('records', 0)}" for split, numbers in manifest.counts[source].items())
        media = ", ".join(f"{totals[k]} {k}" for k in ("images", "videos") if totals.get(k))
        typer.echo(f"  {source:<7} records per split: {splits}" + (f"; {media}" if media else ""))
    from pipelines.fetch import write_sha256sums

    for source in manifest.counts:
        if (Path(out) / source).is_dir():
            write_sha256sums(Path(out) / source)  # so the folder serves as a verified mirror
    typer.echo(f"{len(manifest.files)} files, {manifest.total_bytes() / 1e6:.1f} MB, in {took:.1f} s; "
               f"manifest: {Path(out) / 'manifest.json'}")


def register(app: typer.Typer) -> None:
    """Add the pipelines commands to ``app``."""
    app.command()(synth)
