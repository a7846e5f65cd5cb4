"""The ``end-to-end`` flow: every stage of the demo as a graph of Prefect tasks (one per stage instance),
dependencies passed as task results, independent branches submitted together so they run concurrently
(downloads, preparations, image and video extraction, task-table builds).

Training and evaluation run one after another, after both extractions: they draw from torch's process-wide
random generator (dropout, seeded initialisation), which concurrent threads would interleave, changing the
scores from run to run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows import observe
from flows.demo import (
    EXTRACTORS,
    PRESETS,
    data_notes,
    demo_backbone,
    demo_overrides,
    ensure_clip_weights,
    write_report,
)
from flows.stage_tasks import (
    build_task,
    download_task,
    evaluate_task,
    extract_task,
    prepare_task,
    report_task,
    synthesize_task,
    train_task,
)
from flows.stages.build import task_splits
from flows.stages.prepare import PREPARE_READS


@flow(name="end-to-end", persist_result=False, log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def end_to_end_flow(workdir: str = "demo-output", scale: Literal["tiny", "demo"] = "demo", seed: int = 0,
                    device: Literal["auto", "cpu", "cuda"] = "auto", train_overrides: dict[str, Any] | None = None,
                    backbone: str | None = None, weights: Literal["official", "random"] = "official"
                    ) -> dict[str, Any]:
    """Synthetic raw media to an evaluated VL-PET model, every stage cached and in the lineage.

    Args:
        workdir: where the mirror, data, feature stores, runs and the report go
        scale: synthetic data scale (tiny: CI-sized, a few training steps)
        seed: seed of the synthetic data (same seed, byte-identical files)
        device: where extraction, training and evaluation run
        train_overrides: training config fields for both presets (default: the scale's)
        backbone: a pretrained BART/T5 for both presets: a local directory, or bart-base / t5-base (default with
            official weights: bart-base; with random weights: tiny-bart, random init denoised on the synthetic text)
        weights: official (OpenAI's CLIP and a pretrained backbone, downloaded into the Hugging Face cache on first
            use) or random (random CLIP and the denoised tiny-bart: offline and fast; recorded as such)
    """
    from flows.lineage import LineageStore

    t_all = time.perf_counter()
    from vlpet.hub import check_weights

    check_weights(weights)
    backbone = demo_backbone(backbone, weights)
    # Weights that cannot be had (a backbone without any, official weights offline) fail here, before any work.
    overrides = demo_overrides(scale, backbone, train_overrides, weights)
    clip_keys = ensure_clip_weights(weights)
    notes = data_notes(weights, clip_keys)
    work = Path(workdir).resolve()
    root, mirror = work / "data", work / "mirror"
    data = str(root)
    synth, downloads, prepared, extracted, built = _submit_data_stages(mirror, root, scale, seed, device, weights)
    trained, evaluated = _submit_training(work, data, device, overrides, notes, built, extracted)
    evals = {kind: f.result() for kind, f in evaluated.items()}
    report = report_task.submit({"workdir": str(work), "root": data, "scale": scale, "seed": seed,
                                 "metrics": [e["metrics_path"] for e in evals.values()], "notes": notes},
                                upstream=list(evaluated.values())).result()
    stages = {"synthesize": [synth.result()], "download": [f.result() for f in downloads.values()],
              "prepare": [f.result() for f in prepared.values()], "extract": [f.result() for f in extracted.values()],
              "build": [f.result() for f in built.values()], "train": [f.result() for f in trained.values()],
              "evaluate": list(evals.values()), "report": [report]}
    weights_used = {"choice": weights, "clip": clip_keys,
                    "backbone": {kind: r.get("backbone") for kind, r in zip(PRESETS, stages["train"], strict=True)}}
    summary = write_report(work, report, stages, str(LineageStore(root).path), time.perf_counter() - t_all,
                           weights=weights_used)
    _publish(summary, stages, data)
    return summary


def _submit_data_stages(mirror: Path, root: Path, scale: str, seed: int, device: str, weights: str) -> tuple:
    """Submit synthesis, then per dataset download and prepare, per media kind extraction, per task the table
    build; each task gets the futures it depends on, so independent branches run concurrently."""
    from pipelines.sources import DATASETS
    from vlpet.train import IMAGE_TASKS, VIDEO_TASKS

    data = str(root)
    synth = synthesize_task.submit({"mirror": str(mirror), "root": data, "scale": scale, "seed": seed})
    downloads = {d: download_task.submit({"dataset": d, "root": data, "mirror": mirror.as_uri(),
                                          "media_from": str(mirror / d)}, upstream=[synth]) for d in DATASETS}
    prepared = {d: prepare_task.submit({"dataset": d, "root": data},
                                       upstream=[downloads[d], *(downloads[r] for r in PREPARE_READS.get(d, ()))])
                for d in DATASETS}
    stores = {kind: str(root / "stores" / name) for kind, name in EXTRACTORS.items()}
    extracted = {kind: extract_task.submit({"media": str(root / "raw"), "store": stores[kind],
                                            "extractor": EXTRACTORS[kind], "device": device, "root": data,
                                            "weights": weights},
                                           upstream=list(downloads.values())) for kind in EXTRACTORS}
    kinds = {**{t: "images" for t in IMAGE_TASKS}, **{t: "videos" for t in VIDEO_TASKS}}
    built = {t: build_task.submit({"task": t, "store": stores[kind], "root": data, "splits": list(task_splits(t))},
                                  upstream=[prepared[t], extracted[kind]]) for t, kind in kinds.items()}
    return synth, downloads, prepared, extracted, built


def _submit_training(work: Path, data: str, device: str, overrides: dict[str, Any], notes: Any,
                     built: dict[str, Any], extracted: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit training and test evaluation per preset, one preset at a time after every extraction (see the
    module docstring)."""
    from flows.runs import load_train_config

    trained: dict[str, Any] = {}
    evaluated: dict[str, Any] = {}
    previous: list[Any] = list(extracted.values())  # train/evaluate one at a time (see the module docstring)
    for kind, preset_name in PRESETS.items():
        cfg = load_train_config(preset_name, overrides=overrides)
        run_dir = str(work / "runs" / preset_name)
        trained[kind] = train_task.submit(
            {"config": cfg.model_dump(mode="json"), "out": run_dir, "root": data, "device": device},
            upstream=[*(built[t] for t in cfg.tasks), *previous], options={"data_notes": notes})
        evaluated[kind] = evaluate_task.submit({"run_dir": run_dir, "root": data, "split": "test", "device": device},
                                               upstream=[trained[kind]])
        previous = [evaluated[kind]]
    return trained, evaluated


def _publish(summary: dict[str, Any], stages: dict[str, list[dict[str, Any]]], root: str) -> None:
    """The run's four artifacts: summary table, metrics table, report, lineage (stable keys: one history)."""
    from flows.demo import markdown

    runs = [(f"{name} {_instance(name, r)}", r) for name, results in stages.items() for r in results]
    observe.publish_summary("end-to-end", runs, "end-to-end run")
    observe.publish_metrics("end-to-end", summary["tasks"], "end-to-end run")
    observe.publish_report("end-to-end", markdown(summary), "end-to-end report: scores against the majority "
                           "baseline, notes, stage timings and cache hits")
    ids = [summary["lineage_root"], *(i for name in ("evaluate", "train", "extract")
                                      for r in stages[name] for i in observe.lineage_ids(r))]
    observe.publish_lineage("end-to-end", root, ids, "end-to-end run")


def _instance(stage: str, r: dict[str, Any]) -> str:
    for key in ("dataset", "task", "preset", "split"):
        if key in r and stage != "evaluate":
            return str(r[key])
    if stage == "extract":
        return Path(r["store"]).name
    if stage == "evaluate":
        return Path(r["run_dir"]).name
    return stage
