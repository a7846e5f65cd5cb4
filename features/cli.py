"""The ``features`` commands, registered on the ``vlpet`` command line: ``vlpet store info|verify|gc|export|import``.

``register(app)`` adds a ``store`` sub-app; the console script (``flows.cli``) composes the register
functions of every package.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

store_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Feature stores: inspect (info), list quarantined files (errors), check integrity "
                             "(verify), garbage-collect (gc), export a snapshot as Zarr v3 (export) and read one "
                             "back (import).")


def debug_enabled() -> bool:
    """``vlpet --debug ...``: show tracebacks of bad-input errors instead of one clear line."""
    import os

    return os.environ.get("VLPET_DEBUG", "") not in ("", "0")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _open(path: Path):
    from features.store import FeatureStore, StoreError

    try:
        return FeatureStore.open(path)
    except StoreError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e


@store_app.command("info")
def info(
    path: Path = typer.Argument(..., help="the store directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Spec, snapshots, ok/error counts of the latest, size on disk, runs in staging."""
    store = _open(path)
    doc = store.info()
    if as_json:
        typer.echo(json.dumps(doc))
        return
    spec = doc["spec"]
    console.print(f"[bold]{doc['path']}[/bold]: extractor [bold]{spec['extractor']}[/bold] "
                  f"shape {tuple(spec['shape'])} "
                  f"{spec['dtype']}{' ragged' if spec['ragged'] else ''} params {json.dumps(spec['params'])}")
    c = doc["counts"]
    console.print(f"latest: {doc['latest'] or 'none'}; ok {c.get('ok', 0)}, error {c.get('error', 0)}; "
                  f"weights {doc['weights']!r} random_init {doc['random_init']!r}")
    console.print(f"size on disk: {_human(doc['size_bytes'])} in {doc['files']} files "
                  f"({doc['segments']['count']} segments, {_human(doc['segments']['bytes'])})")
    if doc["snapshots"]:
        console.print(f"snapshots ({len(doc['snapshots'])}, oldest first):")
    for s in doc["snapshots"]:
        k = s["counts"]
        console.print(f"  {s['id']}  parent {s['parent'] or '-'}  {s['created_utc'][:19].replace('T', ' ')} UTC  "
                      + "  ".join(f"{x} {k.get(x, 0)}" for x in ("ok", "error", "new", "reused", "deleted"))
                      + f"  digest {s['content_digest'][:16]}")
    for r in doc["runs"]:
        console.print(f"run {r['run_id']} (parent {r['parent']}, shards {r['shards']}, {_human(r['bytes'])})"
                      f"{' stale: gc removes it' if r['stale'] else ' in progress or interrupted'}")


@store_app.command("errors")
def errors(
    path: Path = typer.Argument(..., help="the store directory"),
    snapshot: str | None = typer.Option(None, "--snapshot", help="snapshot id (default: the latest)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON list of objects"),
) -> None:
    """The quarantined files of a snapshot (media id, path, sha256, reason): what extraction could not use."""
    from dataclasses import asdict

    from features.store import FeatureStore, StoreError

    try:
        records = FeatureStore.open_reader(path, snapshot).errors()
    except StoreError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in records]))
        return
    for r in records:
        typer.echo(f"{r.rel_path}\t{r.sha256[:12]}\t{r.reason}")
    typer.echo(f"{len(records)} quarantined file(s) in {path}", err=True)


@store_app.command("verify")
def verify(
    path: Path = typer.Argument(..., help="the store directory"),
    snapshot: str | None = typer.Option(None, "--snapshot", help="snapshot id (default: every snapshot)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Re-hash every segment against its recorded checksum and check each index; exit 1 on corruption."""
    from features.store import StoreError

    store = _open(path)
    try:
        report = store.verify(snapshot)
    except StoreError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for p in report.problems:
            err_console.print(f"[red]CORRUPT[/red] {p}")
        console.print(f"checked {len(report.snapshots)} snapshot(s), {report.segments_checked} segment(s), "
                      f"{report.rows_checked} row(s), {_human(report.bytes_hashed)} hashed: "
                      + ("[green]OK[/green]" if report.ok else f"[red]{len(report.problems)} problem(s)[/red]"))
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("gc")
def gc(
    path: Path = typer.Argument(..., help="the store directory"),
    keep: list[str] = typer.Option([], "--keep",
                                   help="also keep this snapshot (repeatable); the latest is always kept"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only report what would be deleted"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Delete snapshots other than the latest and the --keep ones, and segments no kept snapshot uses."""
    from features.store import StoreError

    store = _open(path)
    try:
        report = store.gc(keep=keep, dry_run=dry_run)
    except StoreError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"kept {', '.join(report.kept) or 'nothing'}; {verb} {len(report.removed_snapshots)} snapshot(s) "
                  f"{report.removed_snapshots}, {len(report.removed_segments)} segment(s), "
                  f"{len(report.removed_runs)} stale run(s), {len(report.removed_tmp)} temporary file(s); "
                  f"{_human(report.freed_bytes)} {'would be ' if dry_run else ''}freed")


@store_app.command("export")
def export(
    path: Path = typer.Argument(..., help="the store directory"),
    out: str = typer.Argument(..., help="a new local path or fsspec URL (file://, memory://, s3:// ...)"),
    fmt: str = typer.Option("zarr", "--format", help="zarr (a Zarr v3 group; the only format so far)"),
    snapshot: str | None = typer.Option(None, "--snapshot", help="snapshot id (default: the latest)"),
) -> None:
    """Write a snapshot as a Zarr v3 group for Dask/xarray and object storage (training reads the store)."""
    from features.store import StoreError
    from features.store.zarr_view import export_zarr

    if fmt != "zarr":
        err_console.print(f"[red]error:[/red] unknown export format {fmt!r} (supported: zarr)")
        raise typer.Exit(2)
    _open(path)
    try:
        attrs = export_zarr(path, out, snapshot)
    except StoreError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    c = attrs["counts"]
    console.print(f"exported snapshot {attrs['snapshot_id']} ({c['ok']} samples, {c['error']} quarantined) "
                  f"to {out}")


@store_app.command("import")
def import_(
    src: str = typer.Argument(..., help="a Zarr group written by `vlpet store export` (path or fsspec URL)"),
    path: Path = typer.Argument(..., help="the store directory (created when missing)"),
) -> None:
    """Commit an exported snapshot into a store; every feature is re-hashed and the content digest checked."""
    from features.store import StoreError
    from features.store.zarr_view import import_zarr

    try:
        snap = import_zarr(src, path)
    except StoreError as e:
        err_console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from e
    console.print(f"imported snapshot {snap.id} (content {snap.content_digest()[:16]}) into {path}")


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
) -> None:
    """Extract features of every new or changed media file into a feature store, and commit a snapshot."""
    from features.engine import extract as run_extract
    from features.store import StoreError
    from vlpet.hub import WeightsUnavailableError

    def waiting(holder: str) -> None:
        typer.echo(f"waiting: another extraction is writing to {store} ({holder}); this run starts when it ends "
                   f"(--no-wait to exit instead)", err=True)

    try:
        report = run_extract(media, store, extractor=extractor, device=device, batch_size=batch_size,
                             workers=workers, pretrained=pretrained, media_root=media_root,
                             device_decode=device_decode, wait=not no_wait, on_wait=waiting, weights=weights)
    except (ValueError, KeyError, FileNotFoundError, StoreError, WeightsUnavailableError) as e:
        if debug_enabled():
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{report.extractor} on {report.device}: {report.items} media, {report.extracted} extracted, "
               f"{report.reused} reused, {report.deleted} deleted, {len(report.quarantined)} quarantined; "
               f"{report.seconds:.1f} s ({report.items_per_s:.1f}/s)")
    for q in report.quarantined:
        typer.echo(f"  quarantined {q.get('rel_path')} ({str(q.get('sha256', ''))[:12]}): {q.get('reason')}")
    for r in report.refused:
        typer.echo(f"  refused {r['rel_path']}: {r['reason']}")
    if report.random_init:
        typer.echo("  WARNING: random-init weights (--weights random): features are not CLIP's")
    typer.echo(f"snapshot {report.snapshot} (content {str(report.content_digest)[:16]}) in {report.store}")


def register(app: typer.Typer) -> None:
    """Add ``extract`` and the ``store`` sub-app (info, errors, verify, gc, export, import) to ``app``."""
    app.command()(extract)
    app.add_typer(store_app, name="store")


app = typer.Typer(add_completion=False, no_args_is_help=True, help="vlpet feature commands.")
register(app)
