"""The demo's settings and its report (the ``end-to-end`` flow composes the stages; ``vlpet demo`` / ``make demo``
run it on synthetic data). Nothing here imports Prefect.

The stages, each cached by content and recorded in the lineage (``flows.stages``): synthesize the ``demo`` data
in upstream formats → publish it as a ``file://`` mirror with SHA256SUMS → download every dataset through the
verified downloader → prepare unified tables and media indexes → extract CLIP RN101 grids of every image and
ViT-B/32 frame features of every video into two feature stores → build the task tables of every task's
train/val/test splits → train the ``synthetic-image`` and ``synthetic-video`` presets (tiny BART, denoising
pre-trained on the data's text, VL-PET-large) → evaluate on the test splits against the majority-answer
baseline → ``results.json`` (the ``report`` stage) and ``report.json`` + ``report.md`` (this run's summary),
and a lineage record whose tree reaches every raw file. A second run with nothing changed is all cache hits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlpet.atomic import write_json_atomic, write_text_atomic

EXTRACTORS = {"images": "clip-rn101-grid", "videos": "clip-vit-b32-video"}
PRESETS = {"images": "synthetic-image", "videos": "synthetic-video"}
# The tiny scale is the CI fixture: the same stages, a few training steps.
TINY_OVERRIDES: dict[str, Any] = {"epochs": 1, "max_steps": 12, "eval_batch_size": 16,
                                  "pretrain": {"steps": 20, "batch_size": 16, "tokenizer_vocab_size": 600}}
DATA_NOTE = ("Data: the project's synthetic mini-datasets in the upstream formats (pipelines.synth), not the real "
             "benchmarks.")
TIMING_GROUPS = {"build": "build_tasks"}  # a stage's name in report["timings_s"] when it differs


def demo_overrides(scale: str, backbone: str | None = None,
                   train_overrides: dict[str, Any] | None = None, weights: str = "official") -> dict[str, Any]:
    """The training overrides of both presets: ``train_overrides`` (default: the tiny scale's few steps), and
    with ``backbone`` a pretrained BART/T5 in place of the denoised random tiny-bart (no pre-training then).

    ``backbone`` must have pretrained weights: a local directory, or ``bart-base``/``t5-base`` with
    ``weights="official"`` (their public checkpoints are fetched here, downloaded on first use, so weights that
    cannot be had stop the demo before anything is written). A random ``bart-base`` would only be a slower
    tiny-bart, so it is refused up front."""
    from vlpet.backbones import fetch_backbone, has_official_weights

    overrides = dict(train_overrides if train_overrides is not None else (TINY_OVERRIDES if scale == "tiny" else {}))
    if backbone is not None:
        local = Path(backbone).expanduser()
        if not local.is_dir() and not (weights == "official" and has_official_weights(backbone)):
            raise ValueError(f"--backbone {backbone!r}: no pretrained weights with --weights {weights} (a local "
                             "directory with config.json, or bart-base / t5-base with --weights official); without "
                             "them the demo uses its default, tiny-bart denoised on the synthetic text")
        if not local.is_dir():
            fetch_backbone(backbone)
        # A directory is recorded absolute, so the run's config still names it from another working directory.
        overrides.update(backbone=str(local.resolve()) if local.is_dir() else backbone, pretrain=None,
                         weights="official")
    return overrides


def demo_backbone(backbone: str | None, weights: str) -> str | None:
    """The backbone of the demo: the one asked for, else ``bart-base`` with official weights, else None (the
    presets' tiny-bart, random init denoised on the synthetic text)."""
    return backbone if backbone is not None or weights == "random" else "bart-base"


def ensure_clip_weights(weights: str) -> dict[str, str]:
    """The weights key of each demo extractor; official weights are fetched here (downloaded on first use), so
    weights that cannot be had stop the demo before anything is written."""
    from features.extractors import get_extractor
    from features.weights import expected_key

    keys = {}
    for kind, name in EXTRACTORS.items():
        ex = get_extractor(name, device="cpu", weights=weights)
        keys[kind] = expected_key(ex.model_name, None, quick_gelu=ex.quick_gelu, weights=weights) or ""
    return keys


def data_notes(weights: str, clip_keys: dict[str, str]) -> list[str]:
    """The report's notes on what is not real: the data always, the CLIP weights unless official."""
    clip = (f"Features: CLIP with OpenAI's weights ({', '.join(f'{k} {v}' for k, v in clip_keys.items())}), "
            if weights == "official" else "Features: CLIP with RANDOM weights (--weights random), ")
    return [DATA_NOTE, clip + "standardised per dimension before the projector (feature_norm=standardize)."]


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Wall time covered by a stage's runs (overlapping runs of one stage count once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return round(total, 2)


def write_report(workdir: Path, results: dict[str, Any], stages: dict[str, list[dict[str, Any]]],
                 lineage_file: str, total_seconds: float, weights: dict[str, Any] | None = None) -> dict[str, Any]:
    """``report.json`` and ``report.md`` of one end-to-end run: the ``report`` stage's results plus this run's
    stores, runs, cache hits and stage timings (``stages``: stage name -> its runs' results, in this run)."""
    timings = {TIMING_GROUPS.get(name, name): busy_seconds([(r["t_start"], r["t_end"]) for r in runs])
               for name, runs in stages.items()}
    timings["total"] = round(total_seconds, 2)
    hits = {TIMING_GROUPS.get(name, name): f"{sum(r['cache_hit'] for r in runs)}/{len(runs)}"
            for name, runs in stages.items() if name != "report"}
    evals = {r["run_dir"]: r for r in stages.get("evaluate", [])}
    tables = {r["dataset"]: r.get("tables") for r in stages.get("prepare", [])}
    report = {
        **{k: v for k, v in results.items() if k != "results_path"}, "workdir": str(workdir),
        **({"weights": weights} if weights else {}),
        "runs": {kind: {"run_dir": r["run_dir"], "steps": r["steps"], "loss_first": r["loss_first"],
                               "loss_last": r["loss_last"], "report": evals.get(r["run_dir"], {}).get("report")}
                 for kind, r in zip(PRESETS, stages.get("train", []), strict=False)},
        "feature_stores": {kind: {"store": r["store"], "snapshot": r["snapshot"], "media": r["items"],
                                  "extracted": r["extracted"], "reused": r["reused"],
                                  "random_init_weights": r["random_init"]}
                           for kind, r in zip(EXTRACTORS, stages.get("extract", []), strict=False)},
        "datasets": {r["dataset"]: {"files": r.get("files"), "tables": tables.get(r["dataset"])}
                     for r in stages.get("download", [])},
        "cache_hits": hits, "stage_runs": sum(len(runs) for runs in stages.values()),
        "lineage_root": results["lineage"], "lineage_file": lineage_file, "timings_s": timings}
    write_json_atomic(workdir / "report.json", report)
    write_text_atomic(workdir / "report.md", markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# vlpet end-to-end report ({report['scale']} synthetic data, seed {report['seed']})", "",
             "| task | metric | score | majority baseline | beats baseline | distinct predictions | n |",
             "|---|---|---:|---:|:---:|---:|---:|"]
    for task, v in report["tasks"].items():
        score = "-" if v["score"] is None else f"{v['score']:.4f}"
        base = "-" if v["majority_baseline"] is None else f"{v['majority_baseline']:.4f}"
        beats = "yes" if report["beats_majority_baseline"][task] else "no"
        if report["constant_output"].get(task):
            beats += " (constant output)"
        lines.append(f"| {task} | {v['metric']} | {score} | {base} | {beats} | {v.get('distinct_predictions')} | "
                     f"{v['n']} |")
    w = report.get("weights", {})
    if w:
        lines += ["", f"Weights: `--weights {w.get('choice')}`; CLIP "
                  + ", ".join(f"{k} `{v}`" for k, v in w.get("clip", {}).items()) + "; backbone "
                  + ", ".join(f"{k} `{(b or {}).get('source')}`" for k, b in w.get("backbone", {}).items())]
    lines += ["", "## Notes", *[f"- {n}" for n in report["notes"]], "", "## Stage timings (s)", "",
              "| stage | seconds | cache hits |", "|---|---:|---:|"]
    for stage, sec in report["timings_s"].items():
        lines.append(f"| {stage} | {sec} | {report['cache_hits'].get(stage, '')} |")
    lines += ["", f"Lineage root: `{report['lineage_root']}` (`vlpet lineage {report['lineage_root']} --root "
              f"{Path(report['workdir']) / 'data'}`)", ""]
    for kind, r in report["runs"].items():
        lines.append(f"- {kind} run: `{r['run_dir']}` ({r['steps']} steps, loss {r['loss_first']:.3f} -> "
                     f"{r['loss_last']:.3f}); report `{r['report']}`")
    return "\n".join(lines) + "\n"
