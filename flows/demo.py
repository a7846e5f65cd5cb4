"""The end-to-end pipeline (flow ``end-to-end``; ``vlpet demo`` / ``make demo`` run it on synthetic data).

Stages, each cached by content and recorded in the lineage (``flows.prefect_flows``, ``flows.model_flows``):
synthesize the ``demo`` data in upstream formats → publish it as a ``file://`` mirror with SHA256SUMS →
download every dataset through the verified downloader → prepare unified tables and media indexes → extract
CLIP RN101 grids of every image and ViT-B/32 frame features of every video into two feature stores →
build the task tables of every task's train/val/test splits → train the ``synthetic-image`` and
``synthetic-video`` presets (tiny BART, denoising pre-trained on the data's text, VL-PET-large) → evaluate
on the test splits against the majority-answer baseline → ``report.json`` + ``report.md``, and a lineage
record of the report whose tree reaches every raw file. A second run with nothing changed is all cache hits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vlpet.catalog import CATALOG
from vlpet.train import IMAGE_TASKS, VIDEO_TASKS

# Every split of the paper per task (train ones, validation, test), by their names in the prepared tables.
TASK_SPLITS: dict[str, tuple[str, ...]] = {name: spec.splits for name, spec in CATALOG.items()}
EXTRACTORS = {"images": "clip-rn101-grid", "videos": "clip-vit-b32-video"}
PRESETS = {"images": "synthetic-image", "videos": "synthetic-video"}
# The tiny scale is the CI fixture: the same stages, a few training steps.
TINY_OVERRIDES: dict[str, Any] = {"epochs": 1, "max_steps": 12, "eval_batch_size": 16,
                                  "pretrain": {"steps": 20, "batch_size": 16, "tokenizer_vocab_size": 600}}
CONSTANT_SHARE = 0.95  # the share of one prediction above which a task's output counts as constant
T = TypeVar("T")


def _timed(timings: dict[str, float], stage: str, fn: Callable[[], T]) -> T:
    t = time.perf_counter()
    try:
        return fn()
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - t, 2)


def _synthesize(root: Path, mirror: Path, scale: str, seed: int) -> dict[str, Any]:
    """``pipelines.synth.generate`` + SHA256SUMS per source, cached by (scale, seed, code of pipelines)."""
    from flows.prefect_flows import cached_stage
    from pipelines.fetch import write_sha256sums
    from pipelines.synth import generate

    def work() -> dict[str, Any]:
        manifest = generate(mirror, scale=scale, seed=seed)  # type: ignore[arg-type]
        for source in manifest.counts:
            if (mirror / source).is_dir():
                write_sha256sums(mirror / source)
        return {"mirror": str(mirror.resolve()), "counts": manifest.counts, "outputs": [str(mirror)]}

    result, _ = cached_stage(root, "synthesize", {"scale": scale, "seed": seed, "mirror": str(mirror.resolve())},
                             {}, work, packages=("pipelines",))
    return result


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


def run_end_to_end(workdir: str | Path = "demo-output", *, scale: str = "demo", seed: int = 0, device: str = "auto",
                   train_overrides: dict[str, Any] | None = None, backbone: str | None = None,
                   progress: bool = False, weights: str = "official") -> dict[str, Any]:
    """Run every stage (cached) and write ``report.json`` / ``report.md`` under ``workdir``.

    ``weights``: ``official`` (OpenAI's CLIP and, unless ``backbone`` says otherwise, a pretrained ``bart-base``,
    downloaded into the Hugging Face cache on first use) or ``random`` (random CLIP, and the presets' tiny-bart
    denoised on the synthetic text: offline and fast). ``backbone``: a pretrained BART/T5 for both presets (see
    ``demo_overrides``). Weights are checked, and fetched, before any work."""
    from flows.caching import write_json_atomic
    from flows.lineage import LineageStore
    from flows.model_flows import run_evaluate, run_train
    from flows.prefect_flows import run_build, run_download, run_extract, run_prepare
    from flows.runs import load_train_config
    from pipelines.sources import DATASETS
    from vlpet.evaluation import write_text_atomic

    t_all = time.perf_counter()
    workdir = Path(workdir).resolve()
    root = workdir / "data"
    mirror = workdir / "mirror"
    timings: dict[str, float] = {}
    hits: dict[str, list[bool]] = {}
    from vlpet.hub import check_weights

    check_weights(weights)
    backbone = demo_backbone(backbone, weights)
    overrides = demo_overrides(scale, backbone, train_overrides, weights)
    clip_keys = ensure_clip_weights(weights)

    synth = _timed(timings, "synthesize", lambda: _synthesize(root, mirror, scale, seed))
    hits["synthesize"] = [synth["cache_hit"]]
    uri = mirror.as_uri()
    downloads = _timed(timings, "download", lambda: {
        d: run_download(d, root, mirror=uri, media_from=mirror / d) for d in DATASETS})
    hits["download"] = [r["cache_hit"] for r in downloads.values()]
    prepared = _timed(timings, "prepare", lambda: {d: run_prepare(d, root) for d in DATASETS})
    hits["prepare"] = [r["cache_hit"] for r in prepared.values()]

    stores: dict[str, Path] = {kind: root / "stores" / name for kind, name in EXTRACTORS.items()}
    extracted = _timed(timings, "extract", lambda: {
        kind: run_extract(root / "raw", stores[kind], extractor=EXTRACTORS[kind], device=device, root=root,
                          progress=progress, weights=weights) for kind in EXTRACTORS})
    hits["extract"] = [r["cache_hit"] for r in extracted.values()]
    built = _timed(timings, "build_tasks", lambda: {
        task: run_build(task, stores["videos" if task in VIDEO_TASKS else "images"], root, splits=TASK_SPLITS[task])
        for task in (*IMAGE_TASKS, *VIDEO_TASKS)})
    hits["build_tasks"] = [s["cache_hit"] for b in built.values() for s in b["splits"].values()]

    notes = ["Data: the project's synthetic mini-datasets in the upstream formats (pipelines.synth), not the real "
             "benchmarks.",
             (f"Features: CLIP with OpenAI's weights ({', '.join(f'{k} {v}' for k, v in clip_keys.items())}), "
              if weights == "official" else "Features: CLIP with RANDOM weights (--weights random), ")
             + "standardised per dimension before the projector (feature_norm=standardize)."]
    runs: dict[str, dict[str, Any]] = {}
    evals: dict[str, dict[str, Any]] = {}
    for kind, preset_name in PRESETS.items():
        cfg = load_train_config(preset_name, overrides=overrides)
        run_dir = workdir / "runs" / preset_name
        runs[kind] = _timed(timings, "train", lambda cfg=cfg, run_dir=run_dir: run_train(
            cfg, root, run_dir, device=device, progress=progress, data_notes=notes))
        evals[kind] = _timed(timings, "evaluate", lambda run_dir=run_dir: run_evaluate(
            run_dir, root, "test", device=device))
    hits["train"] = [r["cache_hit"] for r in runs.values()]
    hits["evaluate"] = [r["cache_hit"] for r in evals.values()]

    tasks: dict[str, dict[str, Any]] = {}
    for ev in evals.values():
        for task, m in ev["tasks"].items():
            tasks[task] = {"metric": m["metric"], "score": m.get("score"),
                           "majority_baseline": m["majority_baseline"].get("score"),
                           "majority_prediction": m["majority_baseline"].get("prediction"),
                           "split": m.get("split"), "n": m.get("n"),
                           "distinct_predictions": m.get("distinct_predictions"),
                           "top_prediction_share": m.get("top_prediction_share")}
    lineage = LineageStore(root)
    report_path = workdir / "report.json"
    report: dict[str, Any] = {
        "synthetic_data": True, "scale": scale, "seed": seed, "workdir": str(workdir),
        "weights": {"choice": weights, "clip": clip_keys,
                    "backbone": {kind: r.get("backbone") for kind, r in runs.items()}},
        "tasks": tasks,
        "beats_majority_baseline": {t: (v["score"] is not None and v["majority_baseline"] is not None
                                        and v["score"] > v["majority_baseline"]) for t, v in tasks.items()},
        # A model giving (nearly) one answer to everything is a constant baseline whatever its score says.
        "constant_output": {t: (v["top_prediction_share"] or 0.0) >= CONSTANT_SHARE for t, v in tasks.items()},
        "runs": {kind: {"run_dir": r["run_dir"], "steps": r["steps"], "loss_first": r["loss_first"],
                        "loss_last": r["loss_last"], "report": evals[kind]["report"]} for kind, r in runs.items()},
        "feature_stores": {kind: {"store": r["store"], "snapshot": r["snapshot"], "media": r["items"],
                                  "extracted": r["extracted"], "reused": r["reused"],
                                  "random_init_weights": r["random_init"]} for kind, r in extracted.items()},
        "datasets": {d: {"files": downloads[d].get("files"), "tables": prepared[d].get("tables")} for d in DATASETS},
        "notes": list(dict.fromkeys([*notes, *(n for ev in evals.values() for n in ev["notes"])])),
        "cache_hits": {stage: f"{sum(v)}/{len(v)}" for stage, v in hits.items()},
    }
    # The report's own lineage record: its inputs are both evaluations, whose trees reach every raw file.
    write_json_atomic(report_path, report)
    rec = lineage.record("report", report_path, [ev["lineage"] for ev in evals.values()], {"scale": scale,
                         "seed": seed}, stage="end-to-end", flags={"synthetic_data": True})
    timings["total"] = round(time.perf_counter() - t_all, 2)
    report["lineage_root"] = rec.id
    report["lineage_file"] = str(lineage.path)
    report["timings_s"] = timings
    write_json_atomic(report_path, report)
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
