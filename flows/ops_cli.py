"""Operations commands: ``vlpet serve`` (the Prefect deployments) and ``vlpet lineage`` (an artifact's tree)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _label(node: dict[str, Any]) -> str:
    from rich.markup import escape

    if not node.get("recorded", True):
        return f"[dim]{escape(node['id'])}[/dim] {escape(str(node.get('path')))} [dim](no record)[/dim]"
    flags = [k for k, v in (node.get("flags") or {}).items() if v]
    counts = ", ".join(f"{k} {v}" for k, v in (node.get("counts") or {}).items())
    text = f"[bold]{escape(node['id'])}[/bold]"
    if flags:
        text += " " + " ".join(f"[yellow]{escape(f)}[/yellow]" for f in flags)
    if node.get("stage"):
        text += f" [cyan]{escape(node['stage'])}[/cyan]"
    if counts:
        text += f" [dim]({escape(counts)})[/dim]"
    if node.get("truncated"):
        text += " [dim]...[/dim]"
    text += f" {escape(str(node.get('path')))}"
    return text


def render_tree(tree: dict[str, Any]) -> Any:
    """A ``rich.tree.Tree`` of a ``LineageStore.tree`` dict."""
    from rich.tree import Tree

    def add(parent: Tree, node: dict[str, Any]) -> None:
        branch = parent.add(_label(node))
        for child in node.get("inputs", []):
            add(branch, child)

    root = Tree(_label(tree))
    for child in tree.get("inputs", []):
        add(root, child)
    return root


def lineage(
    path_or_id: str = typer.Argument(..., help="an artifact path (table, store snapshot, checkpoint...) or record id"),
    root: Path | None = typer.Option(None, "--root", help="data root holding .vlpet/lineage.jsonl "
                                                              "(default: found from the path, else .)"),
    as_json: bool = typer.Option(False, "--json", help="print the nested record tree as JSON"),
) -> None:
    """Print an artifact's lineage back to the raw files (inputs, parameters, code version, flags)."""
    from rich.console import Console

    from flows.lineage import LineageStore, find_root

    store = LineageStore(root or find_root(path_or_id))
    rec = store.resolve(path_or_id)
    if rec is None:
        typer.echo(f"no lineage record for {path_or_id!r} in {store.path}", err=True)
        raise typer.Exit(1)
    tree = store.tree(rec.id)
    if as_json:
        typer.echo(json.dumps(tree, indent=2, sort_keys=True, default=str))
        return
    Console(soft_wrap=True).print(render_tree(tree))


def serve(
    limit: int | None = typer.Option(None, help="most flow runs at a time (default: no limit)"),
) -> None:
    """Serve every flow (download, prepare, extract-features, build-dataset, ...) as <flow>/default.

    Set PREFECT_API_URL to a running server (`prefect server start`), and PREFECT_RUNNER_POLL_FREQUENCY=1 for
    quick pickup; then `prefect deployment run extract-features/default -p media=DIR -p store=DIR --watch`."""
    from flows.serve import deployment_names, serve_all

    typer.echo("serving: " + ", ".join(deployment_names()), err=True)
    serve_all(limit=limit)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``lineage`` to ``app``."""
    app.command()(serve)
    app.command()(lineage)
