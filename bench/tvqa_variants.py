"""What the demo's video model can learn of TVQA: train the ``synthetic-video`` preset on TVQA alone, on
variants of the demo's TVQA tables, and score each on val against the majority-answer baseline.

Variants (combine with ``+``):
- ``shuffled``: the tables as generated (choices shuffled, as upstream; the answer index is uniform);
- ``subtitle``: a first subtitle line ``<speaker> : <answer text>`` (the dialogue gives the answer away);
- ``fixed-order``: choices listed in their family's fixed order, so the index is a function of the answer.
``--copies K`` repeats every training question K times, each copy with its choices shuffled anew.

    .venv/bin/python bench/tvqa_variants.py --tasks-dir demo-output/data/tasks \\
        --variants shuffled,subtitle,fixed-order,fixed-order+subtitle [--copies 1] [--epochs 12] [--lr 0.01]

Needs a finished ``vlpet demo`` (its task tables and feature store). Prints one line per variant and a
last JSON line. This is a diagnosis of the demo's data and model, not a speed benchmark.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.synth import video_text as vt
from pipelines.synth.scenes import COLORS
from pipelines.tasks.build import open_task_table, write_stream_atomic

SPLITS = ("train", "val")
# Every answer of every question family, by its place in the family's fixed order.
_POOLS = [list(vt.DIRECTION_ANSWER.values()), list(vt.PLACE_ANSWERS.values()), vt.SHAPE_ANSWERS,
          [c.capitalize() + "." for c in COLORS], vt.COUNT_ANSWERS]
FIXED_ORDER = {answer: i for pool in _POOLS for i, answer in enumerate(pool)}


def variant_rows(rows: list[dict[str, Any]], variant: set[str], copies: int, rng: random.Random
                 ) -> list[dict[str, Any]]:
    """``rows`` of a TVQA table rewritten as ``variant`` (``copies`` reshuffled copies of each question)."""
    out = []
    for row in rows:
        answer = row["choices"][int(row["targets"][0][1:])]
        for k in range(copies):
            new = dict(row)
            choices = list(row["choices"])
            if k:
                rng.shuffle(choices)
                new["example_id"] = f"{row['example_id']}-copy{k}"
            if "fixed-order" in variant:
                choices.sort(key=FIXED_ORDER.__getitem__)
            new["choices"], new["targets"] = choices, [f"a{choices.index(answer)}"]
            if "subtitle" in variant:
                subs = row["subs"] or ""
                speaker = subs.split(" : ")[0].strip() if " : " in subs else "Sheldon"
                new["subs"] = f"{speaker} : {answer} {subs}".strip()
            out.append(new)
    return out


def write_variant(tasks_dir: Path, out: Path, variant: set[str], copies: int, seed: int = 0) -> None:
    """``out/tvqa/{train,val}.arrow`` (and their metadata files) as ``variant`` of ``tasks_dir``'s tables."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(tasks_dir / "tvqa", out / "tvqa")
    rng = random.Random(seed)
    for split in SPLITS:
        path = out / "tvqa" / f"{split}.arrow"
        table = open_task_table(path)
        rows = variant_rows(table.to_pylist(), variant, copies if split == "train" else 1, rng)
        write_stream_atomic(pa.Table.from_pylist(rows, schema=table.schema), path)


def train_and_score(tasks: Path, run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    from flows.runs import evaluate_run, load_train_config, train_run

    cfg = load_train_config("synthetic-video", overrides={"tasks": ["tvqa"], **overrides})
    if run_dir.exists():
        shutil.rmtree(run_dir)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_run(cfg, tasks, run_dir, device="cpu", progress=False)
        scores = {split: evaluate_run(run_dir, split, tasks_dir=tasks)["tasks"]["tvqa"] for split in SPLITS}
    return {"seconds": round(time.perf_counter() - t, 1), "steps": result["train"]["steps"],
            **{f"{split}_score": round(s["score"], 4) for split, s in scores.items()},
            **{f"{split}_majority": round(s["majority_baseline"]["score"], 4) for split, s in scores.items()},
            "val_top_share": round(scores["val"]["top_prediction_share"], 3), "n_val": scores["val"]["n"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks-dir", type=Path, required=True, help="a demo workdir's data/tasks")
    ap.add_argument("--variants", default="shuffled,subtitle,fixed-order,fixed-order+subtitle")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--method", default="vl-pet-large")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vlpet-bench-tvqa"))
    args = ap.parse_args()
    overrides = {"epochs": args.epochs, "lr": args.lr, "method": args.method}
    results = {}
    for name in args.variants.split(","):
        variant = set(name.split("+"))
        unknown = variant - {"shuffled", "subtitle", "fixed-order"}
        if unknown:
            raise SystemExit(f"unknown variant part(s) {sorted(unknown)} in {name!r}")
        tasks = args.out / name / "tasks"
        write_variant(args.tasks_dir, tasks, variant, args.copies)
        r = train_and_score(tasks, args.out / name / "run", overrides)
        results[name] = r
        print(f"{name:<24} val {r['val_score']:.3f} (majority {r['val_majority']:.3f}, n {r['n_val']}, top share "
              f"{r['val_top_share']:.2f})  train {r['train_score']:.3f} (majority {r['train_majority']:.3f})  "
              f"{r['steps']} steps, {r['seconds']} s", flush=True)
    print(json.dumps({"copies": args.copies, **overrides, "variants": results}))


if __name__ == "__main__":
    main()
