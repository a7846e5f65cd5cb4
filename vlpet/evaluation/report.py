"""A run's human-readable outputs: the loss-curve PNG and a Markdown report, both written atomically so a
reader (or a crashed run) never sees half a file."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlpet.atomic import write_atomic as _write_atomic
from vlpet.atomic import write_text_atomic

__all__ = ["loss_curve_png", "markdown_report", "write_text_atomic"]


def loss_curve_png(losses: Mapping[str, Sequence[tuple[int, float]]], path: str | os.PathLike[str]) -> Path:
    """Plot training loss against optimizer step, one line per task plus ``"all"``, to a PNG at ``path``.

    ``losses`` maps a task (or ``"all"``) to ``(step, loss)`` points. When ``"all"`` is absent it is drawn from
    the union of the task points (each step is a single-task batch). Uses the Agg canvas directly, so no
    pyplot global state or display is involved.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[tuple[int, float]]] = {}
    for name, points in losses.items():
        pts = sorted((int(s), float(v)) for s, v in points)
        bad = [(s, v) for s, v in pts if not math.isfinite(v)]
        if bad:
            raise ValueError(f"loss curve {name!r} has non-finite losses, e.g. step {bad[0][0]}: {bad[0][1]}")
        series[name] = pts
    if "all" not in series and len(series) > 1:
        series["all"] = sorted(p for pts in series.values() for p in pts)

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name in sorted(n for n in series if n != "all"):
        pts = series[name]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], label=name, linewidth=1.2, zorder=2,
                    marker="." if len(pts) < 50 else None)
    if series.get("all"):
        pts = series["all"]
        ax.plot([s for s, _ in pts], [v for _, v in pts], label="all", color="black", linewidth=1.0, alpha=0.35,
                zorder=1)
    if not any(series.values()):
        ax.text(0.5, 0.5, "no losses recorded", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="upper right")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _write_atomic(path, lambda f: fig.savefig(f, format="png"))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(title: str, config: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]],
                    baselines: Mapping[str, Mapping[str, Any]] | None, notes: Sequence[str],
                    loss_png: str | None) -> str:
    """The run report: metrics table (task | metric | score | majority baseline | n), other metrics, notes,
    the loss-curve image link and the config as fenced JSON. Scores are shown as computed ([0, 1] accuracies,
    coco-caption-scale CIDEr), not ×100."""
    lines = [f"# {title}", "", "## Metrics", "",
             "| task | metric | score | majority baseline | n |", "|---|---|---|---|---|"]
    details: list[str] = []
    for task, m in metrics.items():
        base = (baselines or {}).get(task)
        base_txt = "–" if base is None else _fmt(base.get("score"))
        if base is not None and base.get("prediction") is not None:
            base_txt += f" (\"{_cell(str(base['prediction']))}\")"
        lines.append(f"| {_cell(task)} | {_cell(str(m.get('metric', '')))} | {_fmt(m.get('score'))} | "
                     f"{base_txt} | {_fmt(m.get('n'))} |")
        extras = {k: v for k, v in m.items() if k not in ("task", "metric", "score", "n")}
        if extras:
            details.append(f"- {task}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in extras.items()))
    if details:
        lines += ["", "Other values:", "", *details]
    lines += ["", "Scores are fractions (accuracy in [0, 1], CIDEr on the coco-caption scale), not ×100."]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    if loss_png:
        lines += ["", "## Training loss", "", f"![training loss]({loss_png})"]
    lines += ["", "## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)
