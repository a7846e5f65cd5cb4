"""``vlpet weights list|fetch``: which official weights each extractor and backbone needs, and pre-fetching them.

Pre-fetching is for machines that must not download while they work (air-gapped clusters, Dask workers): fetch
once where there is internet, then copy the Hugging Face cache folder (``$HF_HOME/hub``) or point ``HF_HOME`` at a
shared one. Files go through ``vlpet.hub`` (huggingface_hub's download and cache, sha256-verified).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import typer

weights_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Official weights: what each extractor/backbone needs (list), pre-fetch (fetch).")


@dataclass(frozen=True)
class Needed:
    """One hub file a named extractor or backbone needs (``required=False``: used when the repo has it)."""

    name: str
    kind: str  # "extractor" | "backbone"
    repo_id: str
    filename: str
    required: bool = True


def catalogue() -> dict[str, list[Needed]]:
    """Every name ``vlpet weights fetch`` takes, with the hub files its official weights consist of."""
    from features.weights import EXTRACTOR_MODELS, official_hub_file
    from vlpet.backbones import ARCHITECTURES, OFFICIAL_FILES, official_repo

    out: dict[str, list[Needed]] = {}
    for name, model in EXTRACTOR_MODELS.items():
        entry = official_hub_file(model)
        if entry is not None:
            out[name] = [Needed(name, "extractor", entry[0], entry[1])]
    for name, (family, _, _) in ARCHITECTURES.items():
        repo = official_repo(name)
        if repo is not None:
            required, optional = OFFICIAL_FILES[family]
            out[name] = [Needed(name, "backbone", repo, f) for f in required] + [
                Needed(name, "backbone", repo, f, required=False) for f in optional]
    return out


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _names(names: list[str]) -> dict[str, list[Needed]]:
    from vlpet.backbones import canonical_name

    known = catalogue()
    if not names:
        return known
    picked = {}
    for raw in names:
        name = raw if raw in known else canonical_name(raw)
        if name not in known:
            raise typer.BadParameter(f"{raw!r} has no official weights; known names: {', '.join(known)}",
                                     param_hint="NAME")
        picked[name] = known[name]
    return picked


@weights_app.command("list")
def list_weights(as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """What each extractor and backbone downloads, and whether it is in the Hugging Face cache (no network)."""
    from vlpet.hub import cache_dir, cached_file

    rows = []
    for name, needed in catalogue().items():
        for n in needed:
            hit = cached_file(n.repo_id, n.filename)
            rows.append({"name": name, "kind": n.kind, "repo_id": n.repo_id, "file": n.filename,
                         "required": n.required, "cached": hit is not None, "path": hit})
    if as_json:
        typer.echo(json.dumps({"cache": cache_dir(), "weights": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"official weights (Hugging Face cache: {cache_dir()})")
    for col in ("name", "kind", "hub repo", "file", "cached"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if not r["required"] and not r["cached"]:
            continue  # optional files a repo may lack: only shown once they are here
        table.add_row(r["name"], r["kind"], r["repo_id"], r["file"], "yes" if r["cached"] else "no")
    Console(width=max(120, Console().width)).print(table)


@weights_app.command("fetch")
def fetch(names: list[str] = typer.Argument(None, help="extractor or backbone names (default: all of them)"),
          as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Download (or find in the cache) the official weights of NAME...; print each file's size and sha256."""
    from features.weights import EXTRACTOR_MODELS, resolve_tag
    from vlpet.backbones import fetch_backbone
    from vlpet.hub import WeightsUnavailableError, cache_dir

    done = []
    try:
        for name, needed in _names(names or []).items():
            if needed[0].kind == "extractor":
                _, hub = resolve_tag(EXTRACTOR_MODELS[name], "openai")
                files = [hub] if hub is not None else []
            else:
                files = fetch_backbone(name)
            for f in files:
                done.append({"name": name, **f.as_dict()})
                if not as_json:
                    typer.echo(f"{name}: {f.repo_id}/{f.filename} @ {f.revision[:12]}  {_human(f.size)}  "
                               f"sha256 {f.sha256}")
    except WeightsUnavailableError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"cache": cache_dir(), "files": done}))
    else:
        typer.echo(f"{len(done)} file(s) in {cache_dir()}")


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
