"""The ``pipelines`` commands on the ``vlpet`` command line (``vlpet synth``).

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


def _parse_base_urls(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        source, sep, url = value.partition("=")
        if not sep or not url:
            raise typer.BadParameter(f"expected SOURCE=URL, got {value!r}", param_hint="--base-url")
        out[source.strip()] = url.strip()
    return out


def download(
    dataset: str = typer.Argument(..., help="coco | vqa | gqa | nlvr2 | tvqa | how2qa | tvc | yc2c"),
    root: Path = typer.Option(Path("data"), help="data root: files go to ROOT/raw/DATASET"),
    mirror: str = typer.Option(None, help="global mirror: files are fetched from MIRROR/DATASET/NAME (file:// ok)"),
    base_url: list[str] = typer.Option([], help="per-source base URL override, SOURCE=URL (repeatable)"),
    media_from: Path = typer.Option(None, help="folder with the media that cannot be downloaded (images/, videos/)"),
    optional: bool = typer.Option(False, help="also fetch optional files (test-server splits, shortcuts)"),
    concurrency: int = typer.Option(4, help="parallel transfers"),
    crawl_images: bool = typer.Option(False, help="nlvr2 only: crawl left_url/right_url, keep hash-verified images"),
) -> None:
    """Download, verify and unpack a dataset; say exactly what must be supplied by hand."""
    from pipelines.download import DownloadError
    from pipelines.fetch import fetch_dataset

    try:
        report = fetch_dataset(dataset, root, mirror=mirror, base_urls=_parse_base_urls(base_url),
                               include_optional=optional, max_concurrency=concurrency, media_from=media_from)
    except (ValueError, DownloadError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    fetched = sum(not f["skipped"] for f in report.files)
    typer.echo(f"{dataset}: {len(report.files)} files verified ({fetched} fetched, "
               f"{len(report.files) - fetched} already there), {len(report.unpacked)} archives unpacked "
               f"into {report.raw_dir}")
    if crawl_images:
        if dataset != "nlvr2":
            raise typer.BadParameter("only nlvr2 images can be crawled", param_hint="--crawl-images")
        from pipelines.nlvr2_crawl import crawl_nlvr2_images

        for split in ("train", "dev", "test1"):
            crawl = crawl_nlvr2_images(root, split, concurrency=max(8, concurrency))
            typer.echo(f"  crawled nlvr2 {split}: {crawl.present + crawl.fetched}/{crawl.wanted} images verified "
                       f"({crawl.coverage:.1%}); {len(crawl.failed)} failed (dead URL or hash mismatch)")
    for m in report.manual:
        state = f"{m.present} present" if m.present else "NONE present"
        typer.echo(f"  manual asset '{m.name}': {state} in {m.directory} ({m.pattern}).\n    How to get them: "
                   f"{m.how_to_get}.\n    `vlpet prepare {dataset}` lists exactly which files are missing.")


def prepare(
    dataset: str = typer.Argument(..., help="coco | vqa | gqa | nlvr2 | tvqa | how2qa | tvc | yc2c"),
    root: Path = typer.Option(Path("data"), help="data root (ROOT/raw/DATASET -> ROOT/tables/DATASET)"),
) -> None:
    """Parse a downloaded dataset into unified Arrow tables and a media index; report media coverage."""
    from pipelines.prepare import prepare_dataset
    from pipelines.tables import TableParseError

    try:
        report = prepare_dataset(dataset, root)
    except (ValueError, FileNotFoundError, FileExistsError, TableParseError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    splits = ", ".join(f"{k} {v}" for k, v in report.tables.items())
    typer.echo(f"{dataset}: tables in {report.out_dir}: {splits}")
    typer.echo(f"  media: {report.media_present} present, {report.media_referenced} referenced, "
               f"{report.media_missing} missing (coverage {report.coverage:.1%})")
    for note in report.notes:
        typer.echo(f"  note: {note}")


def register(app: typer.Typer) -> None:
    """Add the pipelines commands to ``app``."""
    app.command()(synth)
    app.command()(download)
    app.command()(prepare)
