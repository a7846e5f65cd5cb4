"""CLI start-up benchmark: how long ``vlpet --help``, a sub-command's ``--help`` and an argument error take.

Each case runs in a fresh Python process, the way the ``vlpet`` console script starts (``from flows.cli
import main; main()``), with this checkout on ``PYTHONPATH``; the figure is the median wall time of
``--runs`` processes (default 5). ``python -c pass`` is measured in the same run as the floor no command
can beat (interpreter start-up). Next to wall time it reports the process's CPU time (user + sys, from
``getrusage(RUSAGE_CHILDREN)``): start-up is single-threaded, so on a machine loaded by other jobs the CPU
time is the better estimate of what the command costs on an idle one. With ``--baseline COMMIT``, the same
cases run against that commit's tree (exported with ``git archive`` into a temporary folder, so the working
tree is untouched), interleaved with the current tree's runs so both see the same machine load::

    .venv/bin/python bench/cli_startup.py                      # this checkout only
    .venv/bin/python bench/cli_startup.py --baseline 59db811   # before/after

It prints a table, then as its last line one JSON object of named figures (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENTRY = "import sys; sys.argv[0] = 'vlpet'; from flows.cli import main; sys.exit(main())"
# case -> (arguments, the exit status it must end with: a usage error is 2)
CASES: dict[str, tuple[list[str], int]] = {
    "help": (["--help"], 0),
    "subcommand_help": (["extract", "--help"], 0),
    "argument_error": (["train", "--device", "cpu"], 2),  # --data and --out are missing
}


def _time_once(case: str, tree: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    argv, expected = (["-c", "pass"], 0) if case == "floor" else (["-c", ENTRY, *CASES[case][0]], CASES[case][1])
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != expected:
        raise SystemExit(f"{case} in {tree} exited {done.returncode} (expected {expected}):\n{done.stderr[-2000:]}")
    return took, cpu


def _export(commit: str, into: Path) -> Path:
    """The tree of ``commit`` in a fresh folder (``git archive``: no worktree or index changes)."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True)
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per case (median reported)")
    parser.add_argument("--baseline", help="a commit to measure against (e.g. 59db811)")
    args = parser.parse_args()

    trees = {"after": REPO}
    scratch = Path(tempfile.mkdtemp(prefix="vlpet-cli-bench-"))
    try:
        if args.baseline:
            trees = {"before": _export(args.baseline, scratch / "before"), **trees}
        cases = ["floor", *CASES]
        times: dict[tuple[str, str], list[tuple[float, float]]] = {(t, c): [] for t in trees for c in cases}
        for tree in trees.values():  # warm the page cache and the .pyc files of each tree once
            for case in cases:
                _time_once(case, tree)
        for _ in range(args.runs):  # interleaved, so before and after see the same load
            for case in cases:
                for name, tree in trees.items():
                    times[(name, case)].append(_time_once(case, tree))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    load = os.getloadavg()[0]
    print(f"median of {args.runs} fresh processes, seconds (python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"1-min load average {load:.1f} at the end)")
    cols = [f"{t} {kind}" for kind in ("wall", "cpu") for t in trees]
    ratios = "   wall ratio    cpu ratio" if "before" in trees else ""
    print(f"{'case':<18}" + "".join(f"{c:>13}" for c in cols) + ratios)
    figures: dict[str, float] = {"load_average_1min": round(load, 2)}
    for case in cases:
        row = f"{case:<18}" + "".join(f"{med[(t, case)]:>13.3f}" for t in trees)
        row += "".join(f"{cpu[(t, case)]:>13.3f}" for t in trees)
        for t in trees:
            figures[f"{t}_{case}_s"] = round(med[(t, case)], 3)
            figures[f"{t}_{case}_cpu_s"] = round(cpu[(t, case)], 3)
        if "before" in trees:
            ratio = med[("after", case)] / med[("before", case)]
            cpu_ratio = cpu[("after", case)] / cpu[("before", case)]
            figures[f"{case}_after_over_before"] = round(ratio, 3)
            figures[f"{case}_cpu_after_over_before"] = round(cpu_ratio, 3)
            row += f"{ratio:>13.3f}{cpu_ratio:>13.3f}"
        print(row)
    if args.baseline:
        figures["baseline_commit"] = args.baseline  # type: ignore[assignment]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
