"""The stage commands: ``vlpet download``, ``prepare``, ``extract`` and ``build``. Each runs its stage through
the executor (``flows.stages``), exactly as the flows do: a CLI run and a flow run of the same inputs share the
cache key, the lineage record and the outputs, and an unchanged re-run is a cache hit.

Heavy libraries (torch, pyarrow, Prefect) are imported inside the command bodies, so ``vlpet --help`` stays
fast; the stages never import Prefect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

DATASETS_HELP = "coco | vqa | gqa | nlvr2 | tvqa | how2qa | tvc | yc2c"


def _fail(e: Exception, code: int = 1) -> typer.Exit:
    """One clear line for bad input (``vlpet --debug``: the traceback instead)."""
    from features.cli import debug_enabled

    if debug_enabled():
        raise e
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _cache_line(result: dict[str, Any]) -> str:
    state = "cache hit, nothing recomputed" if result["cache_hit"] else "computed"
    lineage = result.get("lineage")
    shown = lineage if isinstance(lineage, str) else f"{len(lineage or [])} records"
    return f"  stage {state} (key {str(result.get('cache_key', ''))[:12]}); lineage {shown}"


def _parse_base_urls(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        source, sep, url = value.partition("=")
        if not sep or not url:
            raise typer.BadParameter(f"expected SOURCE=URL, got {value!r}", param_hint="--base-url")
        out[source.strip()] = url.strip()
    return out


def download(
    dataset: str = typer.Argument(..., help=DATASETS_HELP),
    root: Path = typer.Option(Path("data"), help="data root: files go to ROOT/raw/DATASET"),
    mirror: str = typer.Option(None, help="global mirror: files are fetched from MIRROR/DATASET/NAME (file:// ok)"),
    base_url: list[str] = typer.Option([], help="per-source base URL override, SOURCE=URL (repeatable)"),
    media_from: Path = typer.Option(None, help="folder with the media that cannot be downloaded (images/, videos/)"),
    optional: bool = typer.Option(False, help="also fetch optional files (test-server splits, shortcuts)"),
    concurrency: int = typer.Option(4, help="parallel transfers"),
    crawl_images: bool = typer.Option(False, help="nlvr2 only: crawl left_url/right_url, keep hash-verified images"),
    force: bool = typer.Option(False, help="run even when the stage cache holds a valid result"),
) -> None:
    """Download, verify and unpack a dataset (cached, in the lineage); say exactly what must be supplied by hand."""
    from flows.stages import run_download
    from pipelines.download import DownloadError

    params = {"mirror": mirror, "base_urls": _parse_base_urls(base_url) or None, "include_optional": optional,
              "media_from": str(media_from) if media_from else None, "max_concurrency": concurrency}
    try:
        result = run_download(dataset, root, force=force, **params)
    except (ValueError, DownloadError) as e:
        raise _fail(e) from None
    fetched = result.get("fetched", 0)
    typer.echo(f"{dataset}: {result['files']} files verified ({fetched} fetched, {result['files'] - fetched} "
               f"already there), {len(result['unpacked'])} archives unpacked into {result['raw_dir']}")
    typer.echo(_cache_line(result))
    if crawl_images:
        if dataset != "nlvr2":
            raise typer.BadParameter("only nlvr2 images can be crawled", param_hint="--crawl-images")
        from pipelines.nlvr2_crawl import crawl_nlvr2_images

        for split in ("train", "dev", "test1"):
            crawl = crawl_nlvr2_images(root, split, concurrency=max(8, concurrency))
            typer.echo(f"  crawled nlvr2 {split}: {crawl.present + crawl.fetched}/{crawl.wanted} images verified "
                       f"({crawl.coverage:.1%}); {len(crawl.failed)} failed (dead URL or hash mismatch)")
    for m in result["manual"]:
        state = f"{m['present']} present" if m["present"] else "NONE present"
        typer.echo(f"  manual asset '{m['name']}': {state} in {m['directory']} ({m['pattern']}).\n    How to get "
                   f"them: {m['how_to_get']}.\n    `vlpet prepare {dataset}` lists exactly which files are missing.")


def prepare(
    dataset: str = typer.Argument(..., help=DATASETS_HELP),
    root: Path = typer.Option(Path("data"), help="data root (ROOT/raw/DATASET -> ROOT/tables/DATASET)"),
    force: bool = typer.Option(False, help="run even when the stage cache holds a valid result"),
) -> None:
    """Parse a downloaded dataset into unified Arrow tables and a media index (cached, in the lineage)."""
    from flows.stages import run_prepare
    from pipelines.tables import TableParseError

    try:
        r = run_prepare(dataset, root, force=force)
    except (ValueError, FileNotFoundError, FileExistsError, TableParseError) as e:
        raise _fail(e) from None
    splits = ", ".join(f"{k} {v['rows']}" for k, v in r["tables"].items())
    typer.echo(f"{dataset}: tables in {r['tables_dir']}: {splits}")
    typer.echo(f"  media: {r['media_present']} present, {r['media_referenced']} referenced, "
               f"{r['media_missing']} missing (coverage {r['coverage']:.1%})")
    for note in r["notes"]:
        typer.echo(f"  note: {note}")
    typer.echo(_cache_line(r))


def extract(
    media: Path = typer.Option(..., "--media", help="a folder (searched recursively) or a media index (.arrow)"),
    store: Path = typer.Option(..., "--store", help="the feature store (created when missing)"),
    extractor: str = typer.Option("clip-rn101-grid", help="clip-rn101-grid | clip-vit-b32-grid | "
                                  "clip-vit-b16-grid | clip-vit-b32-video"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:N]"),
    batch_size: int = typer.Option(None, "--batch-size", help="default: 8 on CPU, 128 on GPU (videos: 2 / 4)"),
    workers: int = typer.Option(None, help="decoding processes (default: one per spare core)"),
    pretrained: str = typer.Option(None, help="other weights than OpenAI's: a local weights file, or an open_clip "
                                   "pretrained tag (downloaded from the Hugging Face hub on first use)"),
    weights: str = typer.Option("official", "--weights", help="official (default: OpenAI's CLIP, or --pretrained; "
                                "downloaded on first use into the Hugging Face cache) | random (random init, for "
                                "tests; recorded in the store)"),
    media_root: Path = typer.Option(None, help="with a media index: the folder its rel_paths are relative to"),
    device_decode: bool = typer.Option(False, help="decode JPEGs in batches on the device (nvJPEG on a GPU); "
                                       "a separate store spec (its resize differs slightly from PIL's)"),
    no_wait: bool = typer.Option(False, "--no-wait", help="exit with an error instead of waiting when another "
                                 "extraction is writing to the store"),
    root: Path = typer.Option(None, help="data root for cache and lineage (default: $VLPET_DATA_ROOT, else the "
                                         "store's parent)"),
    force: bool = typer.Option(False, help="run even when the stage cache holds a valid result"),
) -> None:
    """Extract features of every new or changed media file into a feature store, and commit a snapshot."""
    from features.store import StoreError
    from flows.stages import run_extract
    from vlpet.hub import WeightsUnavailableError, check_weights

    try:
        check_weights(weights)  # before the stage validates its parameters: one plain line naming the choices
    except ValueError as e:
        raise _fail(e, 2) from None

    def waiting(holder: str) -> None:
        typer.echo(f"waiting: another extraction is writing to {store} ({holder}); this run starts when it ends "
                   f"(--no-wait to exit instead)", err=True)

    try:
        r = run_extract(media, store, extractor=extractor, device=device, batch_size=batch_size, workers=workers,
                        pretrained=pretrained, media_root=str(media_root) if media_root else None,
                        device_decode=device_decode, root=str(root) if root else None, force=force, progress=True,
                        wait=not no_wait, on_wait=waiting, weights=weights)
    except (ValueError, KeyError, FileNotFoundError, StoreError, WeightsUnavailableError) as e:
        raise _fail(e, 2) from None
    typer.echo(f"{r['extractor']} on {r['device']}: {r['items']} media, {r['extracted']} extracted, "
               f"{r['reused']} reused, {r['deleted']} deleted, {len(r['quarantined'])} quarantined; "
               f"{r['seconds']:.1f} s")
    for q in r["quarantined"]:
        typer.echo(f"  quarantined {q.get('rel_path')} ({str(q.get('sha256', ''))[:12]}): {q.get('reason')}")
    for refused in r.get("refused", []):
        typer.echo(f"  refused {refused['rel_path']}: {refused['reason']}")
    if r["random_init"]:
        typer.echo("  WARNING: random-init weights (--weights random): features are not CLIP's")
    typer.echo(f"snapshot {r['snapshot']} (content {str(r['content_digest'])[:16]}) in {r['store']}")
    typer.echo(_cache_line(r) + f" (`vlpet lineage {r['store']}`)")


def build(
    task: str = typer.Argument(..., help="vqa | gqa | nlvr2 | coco | tvqa | how2qa | tvc | yc2c"),
    store: Path = typer.Option(..., "--store", help="the feature store holding the task's media features"),
    root: Path = typer.Option(Path("data"), help="data root (ROOT/tables/DATASET -> ROOT/tasks/TASK)"),
    splits: list[str] = typer.Option([], "--splits", help="a split to build (repeatable; default: every split "
                                                           "of the paper)"),
    snapshot: str = typer.Option(None, help="the store snapshot (default: the latest)"),
    dataset: str = typer.Option(None, help="the prepared dataset (default: the task's name)"),
    force: bool = typer.Option(False, help="run even when the stage cache holds a valid result"),
) -> None:
    """Build a task's tables: its unified tables joined to a feature-store snapshot (cached, in the lineage)."""
    from features.store import StoreError
    from flows.stages import run_build

    try:
        out = run_build(task, store, root, splits=[s for x in splits for s in x.split(",") if s] or None,
                        snapshot=snapshot, dataset=dataset, force=force)
    except (ValueError, KeyError, FileNotFoundError, StoreError) as e:
        raise _fail(e) from None
    for split, r in out["splits"].items():
        typer.echo(f"{task} {split}: {r['rows_out']}/{r['rows_in']} rows ({r['excluded']} excluded: media without "
                   f"usable features) -> {r['path']}")
        typer.echo(_cache_line(r))
    typer.echo(f"snapshot {out['snapshot']}; {out['hits']}/{len(out['splits'])} splits from the cache")


def register(app: typer.Typer) -> None:
    """Add the stage commands to ``app``."""
    for command in (download, prepare, extract, build):
        app.command()(command)
