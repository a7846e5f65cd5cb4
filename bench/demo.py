"""End-to-end demo timings: a cold ``vlpet demo`` in a fresh directory, then an unchanged re-run, then a re-run
after changing one image (incremental). Targets (issue): cold <= 600 s on 2 CPU cores, unchanged <= 30 s.

    .venv/bin/python bench/demo.py [--workdir /tmp/vlpet-bench-demo] [--scale demo]

Prints the per-stage timings of each run and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(workdir: Path, scale: str, env: dict[str, str]) -> tuple[float, dict]:
    exe = Path(sys.executable).parent / "vlpet"
    t = time.perf_counter()
    proc = subprocess.run([str(exe), "demo", "--workdir", str(workdir), "--scale", scale, "--device", "cpu",
                           "--weights", "random"],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, json.loads((workdir / "report.json").read_text())


def change_one_image(workdir: Path) -> str:
    """Rewrite one COCO image of the raw store with other pixels (same name), like a corrected upstream file."""
    from PIL import Image

    raw = sorted((workdir / "data" / "raw" / "coco").rglob("*.jpg"))[0]
    img = Image.open(raw).convert("RGB")
    img.putpixel((0, 0), tuple(255 - c for c in img.getpixel((0, 0))))
    img.save(raw, quality=95)
    return str(raw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vlpet-bench-demo"))
    ap.add_argument("--scale", default="demo")
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cold_s, cold = run(args.workdir, args.scale, env)
    print(f"cold: {cold_s:.1f} s wall; stages {cold['timings_s']}")
    for task, v in cold["tasks"].items():
        print(f"  {task:<7} {v['metric']:<13} {v['score']}  majority {v['majority_baseline']}")
    warm_s, warm = run(args.workdir, args.scale, env)
    print(f"unchanged re-run: {warm_s:.1f} s wall; stages {warm['timings_s']}; hits {warm['cache_hits']}")
    changed = change_one_image(args.workdir)
    inc_s, inc = run(args.workdir, args.scale, env)
    extracted = {k: v["extracted"] for k, v in inc["feature_stores"].items()}
    print(f"one image changed ({changed}): {inc_s:.1f} s wall; extracted {extracted}; hits {inc['cache_hits']}")
    print(json.dumps({
        "cold_s": round(cold_s, 1), "unchanged_rerun_s": round(warm_s, 1), "one_image_changed_s": round(inc_s, 1),
        "cold_stages_s": cold["timings_s"], "rerun_hits": warm["cache_hits"], "changed_extracted": extracted,
        "changed_hits": inc["cache_hits"],
        "scores": {t: v["score"] for t, v in cold["tasks"].items()},
        "majority": {t: v["majority_baseline"] for t, v in cold["tasks"].items()},
    }))


if __name__ == "__main__":
    main()
