"""Scale benchmark: every data stage at 1 %, 10 % and 100 % of the real dataset sizes, wall/CPU time and peak RSS.

The demo is at most 2,000 rows; the real datasets are hundreds of times larger (VQA v2 658k questions over
123k images, GQA balanced 1.07M, NLVR2 107k, TVQA 152k over 21.8k clips, ...). For each fraction this
writes upstream-format annotation files (``bench/scale_data.py``, no media drawn), then runs each stage in its
**own process** (a fork of a server that imported the project once) and records its wall time, CPU time (user +
system) and peak RSS (``ru_maxrss`` of that process from ``wait4``; ``base_rss_mb`` is what it started from,
the interpreter and imports: ~450 MB, mostly torch, which ``vlpet`` imports):

- ``prepare:<dataset>``: ``pipelines.prepare.prepare_dataset`` for all eight datasets (media are absent, so
  the media index is empty and every referenced media id is listed as missing: the parse, join and write
  path is what is measured, not hashing of image files);
- ``store:thin``: a store over every media id the tables reference (images ``(1, 8)``, videos ``(None, 8)``
  with 2 frames; thin on purpose: the task builds need the ids, not the bytes);
- ``build:<task>``: ``pipelines.tasks.build.build_task`` for all eight tasks against the thin stores;
- store section (COCO image features through the store writer, real width ``(49, 2048)`` float16 up to
  ``--full-width-max`` rows, thinner beyond, said in the table): ``store:commit`` (stage + commit),
  ``store:open`` (open a reader, first row), ``store:read-cold`` (page cache of the segments evicted with
  ``posix_fadvise(DONTNEED)``, then random single-row reads copied out), ``store:read-cold-batch`` (the
  loader's pattern, cold: random 64-row ``get_many`` batches, with and without the next batch prefetched),
  ``store:read-warm`` (the single rows again); segment verification (readers hash each segment once per
  process when first mapped) is timed apart (``verify_s``) before the reads; the read stages also report
  rows/s and the process's file-backed resident memory (``RssFile``);
- loader section (``loader:tables``, ``loader:w0``, ``loader:w2``): VQA + COCO captions over those COCO
  features, one multi-task loader with the text pipeline: open, verification, first batch, samples/s, memory.

Stages are a list of ``Stage(name, section, run)``; ``register`` adds more. ``--code DIR`` imports the project
from another checkout (e.g. an older commit unpacked with ``git archive``), and ``--baseline-code DIR
--baseline-stages REGEX`` runs the matching stages with both checkouts in the same run and prints after/before
ratios. Growth exponents are least-squares slopes of log(metric) over log(fraction) (1.0 = linear); the memory
exponent uses the peak minus the pre-stage RSS.

Usage::

    python bench/scale.py                                   # 1 %, all stages (about 2 minutes on 2 cores)
    nice python bench/scale.py --fractions 0.01 0.1 1.0 --root /tmp/scale
    python bench/scale.py --fractions 0.1 --stages 'prepare:(gqa|vqa)|build:vqa' --baseline-code /tmp/before \\
        --baseline-stages 'prepare:(gqa|vqa)|build:vqa'

It prints a table of stage x size, the growth exponents, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CODE_ENV = "VLPET_SCALE_CODE"


@dataclass(frozen=True)
class Context:
    """What a stage gets: the data root of this fraction, the fraction, and the options of the run."""

    root: Path
    fraction: float
    options: dict[str, Any]


@dataclass(frozen=True)
class Stage:
    name: str
    section: str  # "prepare" | "build" | "store" | "loader" | ...
    run: Callable[[Context], dict[str, Any] | None]


STAGES: list[Stage] = []


def register(name: str, section: str, run: Callable[[Context], dict[str, Any] | None]) -> None:
    """Add a stage; it runs in its own subprocess, after the stages registered before it."""
    if any(s.name == name for s in STAGES):
        raise ValueError(f"stage {name!r} is already registered")
    STAGES.append(Stage(name, section, run))


# ------------------------------------------------------------------------------------ prepare + build

DATASETS = ("coco", "vqa", "gqa", "nlvr2", "tvqa", "tvc", "how2qa", "yc2c")
# task -> (dataset, split, store): the largest (training) split of every task
TASK_SPLITS = {"vqa": ("vqa", "karpathy_train", "images"), "gqa": ("gqa", "train", "images"),
               "nlvr2": ("nlvr2", "train", "images"), "coco": ("coco", "train", "images"),
               "tvqa": ("tvqa", "train", "videos"), "how2qa": ("how2qa", "train_release", "videos"),
               "tvc": ("tvc", "train_release", "videos"), "yc2c": ("yc2c", "train_release", "videos")}


def _prepare(dataset: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        from pipelines.prepare import prepare_dataset

        report = prepare_dataset(dataset, ctx.root)
        return {"rows": sum(report.tables.values())}

    return run


def _media_items(path: Path, kind: str) -> list[Any]:
    import hashlib

    from features.media import MediaItem

    ids = sorted(set(path.read_text().split()))
    return [MediaItem(m, f"{m}.{'jpg' if kind == 'image' else 'mp4'}", hashlib.sha256(m.encode()).hexdigest(),
                      kind, 1000) for m in ids]


def _write_store(root: Path, spec: Any, items: list[Any], make: Callable[[int], Any], flush_rows: int) -> None:
    from features.store import FeatureStore

    store = FeatureStore.open_or_create(root, spec)
    plan = store.plan(items)
    run = store.begin_run()
    with run.shard_writer("0", flush_rows=flush_rows) as writer:
        for i, item in enumerate(plan.to_extract):
            writer.add(item, make(i))
    store.commit(run, items, {"weights": "scale-bench", "random_init": True})


def _thin_stores(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from features.store import StoreSpec

    rows = 0
    for kind, shape, ragged in (("images", (1, 8), False), ("videos", (None, 8), True)):
        items = _media_items(ctx.root / "media_ids" / f"{kind}.txt", kind[:-1])
        array = np.ones((2, 8) if ragged else shape, np.float16)
        spec = StoreSpec(f"scale-thin-{kind}", shape, "float16", ragged=ragged, params={"bench": "scale"})
        _write_store(ctx.root / "stores" / kind, spec, items, lambda i, a=array: a, 4096)
        rows += len(items)
    return {"rows": rows}


def _build(task: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        from pipelines.tasks.build import build_task

        dataset, split, store = TASK_SPLITS[task]
        report = build_task(ctx.root, task, split, ctx.root / "stores" / store, dataset=dataset)
        return {"rows": report.rows_in}

    return run


for _d in DATASETS:
    register(f"prepare:{_d}", "prepare", _prepare(_d))
register("store:thin", "build", _thin_stores)
for _t in TASK_SPLITS:
    register(f"build:{_t}", "build", _build(_t))


# ------------------------------------------------------------------------------------ store section
# Feature-store figures with the store's own reader (features.store): commit, open, cold and warm random
# reads.

FULL_WIDTH = (49, 2048)


def _coco_ids(ctx: Context) -> list[str]:
    return [m for m in (ctx.root / "media_ids" / "images.txt").read_text().split() if m.startswith("COCO_")]


def _feature_shape(ctx: Context, n: int) -> tuple[int, int]:
    """(49, 2048) while the store fits ``--full-width-max`` rows, else (49, 2048 // k) (said in the output)."""
    limit = ctx.options.get("full_width_max", 20_000)
    width = FULL_WIDTH[1]
    while n > limit and width > 64:
        n, width = n // 2, width // 2  # keep rows x width within the full-width byte budget
    return FULL_WIDTH[0], width


def _feature_store(ctx: Context) -> Path:
    return ctx.root / "stores" / "coco-features"


def _store_commit(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from features.store import StoreSpec

    ids = _coco_ids(ctx)
    shape = _feature_shape(ctx, len(ids))
    (ctx.root / "stores").mkdir(parents=True, exist_ok=True)
    (ctx.root / "stores" / "coco-features.shape").write_text(json.dumps(shape))
    pool = np.random.default_rng(0).standard_normal((16, *shape), dtype=np.float32).astype(np.float16)
    spec = StoreSpec("scale-rn101-grid", shape, "float16", params={"bench": "scale"})
    _write_store(_feature_store(ctx), spec, _coco_items(ids), lambda i: pool[i % 16], 256)
    nbytes = len(ids) * shape[0] * shape[1] * 2
    return {"rows": len(ids), "shape": list(shape), "feature_gb": round(nbytes / 1e9, 3)}


def _coco_items(ids: list[str]) -> list[Any]:
    import hashlib

    from features.media import MediaItem

    return [MediaItem(m, f"{m}.jpg", hashlib.sha256(m.encode()).hexdigest(), "image", 1000) for m in ids]


def _status_mb(key: str, pid: int | str = "self") -> float:
    """A ``/proc/<pid>/status`` memory figure (``VmRSS``, ``RssFile``, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _store_open(ctx: Context) -> dict[str, Any]:
    from features.store import FeatureStore

    t0 = time.perf_counter()
    reader = FeatureStore.open_reader(_feature_store(ctx))
    ids = reader.media_ids
    reader.get(ids[len(ids) // 2])
    return {"rows": len(ids), "open_first_row_s": round(time.perf_counter() - t0, 4)}


def _evict(directory: Path) -> None:
    """Drop the page cache of every segment under ``directory`` (``bench/pagecache.py``: fsync first, since
    pages still dirty from the commit are not dropped; no root needed)."""
    from pagecache import evict  # bench/ sibling (the script's own directory is on sys.path)

    evict(sorted(directory.rglob("*.arrow")))


def _verify_timed(reader: Any) -> dict[str, Any]:
    """Readers that hash each segment when a process first maps it (``check_segments``) do it for all of them
    here, so the reads timed after are reads: ``{"verify_s": ...}`` (empty for readers without it)."""
    if not hasattr(reader, "check_segments"):
        return {}
    t = time.perf_counter()
    reader.check_segments()
    return {"verify_s": round(time.perf_counter() - t, 2)}


def _random_reads(ctx: Context, cold: bool) -> dict[str, Any]:
    import numpy as np

    from features.store import FeatureStore

    store = _feature_store(ctx)
    reader = FeatureStore.open_reader(store)
    out = _verify_timed(reader)
    if cold:
        reader.close()
        _evict(store / "segments")
    ids = reader.media_ids
    rng = np.random.default_rng(1)
    picks = [ids[i] for i in rng.choice(len(ids), size=min(ctx.options.get("reads", 2000), len(ids)), replace=False)]
    if not cold:
        for m in picks:
            np.array(reader.get(m))
    t0 = time.perf_counter()
    nbytes = 0
    for m in picks:
        nbytes += np.array(reader.get(m)).nbytes
    dt = time.perf_counter() - t0
    return {"rows": len(ids), "reads": len(picks), "rows_per_s": round(len(picks) / dt, 1),
            "read_mb": round(nbytes / 2**20, 1), "rss_file_mb": round(_status_mb("RssFile"), 1), **out}


def _batch_reads(ctx: Context) -> dict[str, Any]:
    """What the training loader does, cold: random ``--cold-batch``-row batches through ``get_many``.

    Readers that verify segments when a process first maps them (``check_segments``) verify every segment
    first, timed apart (``verify_s``: one full read and sha256 of the store), then the files are evicted
    again, so the timed phase is reads. Where the reader has ``prefetch`` (the loader asks for the next
    batch while this one is used), a second cold phase does that too (``lookahead_rows_s``).
    """
    import gc

    import numpy as np

    from features.store import FeatureStore

    store = _feature_store(ctx)
    reader = FeatureStore.open_reader(store)
    ids = reader.media_ids
    batch, batches = ctx.options.get("cold_batch", 64), ctx.options.get("cold_batches", 40)
    rng = np.random.default_rng(2)
    draw = [[ids[i] for i in rng.choice(len(ids), batch, replace=False)] for _ in range(2 * batches)]
    out: dict[str, Any] = {"rows": len(ids), "batch": batch, "batches": batches, **_verify_timed(reader)}

    def cold_phase(name: str, picks: list[list[str]], lookahead: bool) -> None:
        reader.close()  # mapped pages are not evicted: unmap, then drop the files' pages
        gc.collect()
        _evict(store / "segments")
        reader.get(ids[0])
        file0 = _status_mb("RssFile")
        t = time.perf_counter()
        if lookahead:
            reader.prefetch(picks[0])
        for k, b in enumerate(picks):
            if lookahead and k + 1 < len(picks):
                reader.prefetch(picks[k + 1])
            reader.get_many(b)
        out[f"{name}_rows_s"] = round(batch * len(picks) / (time.perf_counter() - t), 1)
        row_mb = reader.get(ids[0]).nbytes / 2**20
        out[f"{name}_read_mb"] = round(len({m for b in picks for m in b}) * row_mb, 1)
        out[f"{name}_rss_file_growth_mb"] = round(_status_mb("RssFile") - file0, 1)

    cold_phase("batch", draw[:batches], lookahead=False)
    if hasattr(reader, "prefetch"):
        cold_phase("lookahead", draw[batches:], lookahead=True)
    return out


register("store:commit", "store", _store_commit)
register("store:open", "store", _store_open)
register("store:read-cold", "store", lambda ctx: _random_reads(ctx, cold=True))
register("store:read-cold-batch", "store", _batch_reads)
register("store:read-warm", "store", lambda ctx: _random_reads(ctx, cold=False))


# ------------------------------------------------------------------------------------ loader section
# The training loader at real row counts: VQA (Karpathy train, 2 images' worth of questions per COCO image)
# and COCO captions (one example per caption) over the COCO feature store of ``store:commit``, as one
# multi-task loader with the full text pipeline (tokenize, ``VLBatch``). Needs ``prepare:vqa``,
# ``prepare:coco`` and ``store:commit`` of the same fraction.

LOADER_TASKS = {"vqa": ("vqa", "karpathy_train"), "coco": ("coco", "train")}


def _loader_table(ctx: Context, task: str) -> Path:
    return ctx.root / "loader" / f"{task}.arrow"


def _loader_tables(ctx: Context) -> dict[str, Any]:
    """Task tables of ``LOADER_TASKS`` joined with the COCO feature store (the build stages' tables point at
    the thin store's snapshot, which a loader over these features would refuse)."""
    from pipelines.tasks.build import build_task_table

    out: dict[str, Any] = {}
    for task, (dataset, split) in LOADER_TASKS.items():
        report = build_task_table(task, split, ctx.root / "tables" / dataset / f"{split}.arrow",
                                  _feature_store(ctx), _loader_table(ctx, task))
        out[f"{task}_rows"] = report.rows_in
    return out


def _loader(workers: int) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        """Open the tables (``check_features`` verifies the segments they use: timed apart, then the segments
        are evicted again), then from cold: seconds to the first batch, samples/s over the next
        ``--loader-batches`` batches (one sample = one image's features), and the process's memory (all
        processes' for workers: ``RssAnon`` is what the loader holds, ``RssFile`` the mapped pages and
        libraries; ``start_*`` the main process before the loader was made)."""
        import numpy as np
        import psutil

        from pipelines.tasks import TaskDataset, multitask_loader
        from vlpet.tokenization import train_tokenizer

        tokenizer = train_tokenizer(["what is it?", "two dogs on a bench.", "yes", "no", "a red bus."] * 40,
                                    "bart", vocab_size=400)
        t = time.perf_counter()
        parts = {task: TaskDataset(_loader_table(ctx, task)) for task in LOADER_TASKS}
        out: dict[str, Any] = {"examples": {task: len(d) for task, d in parts.items()}, "workers": workers,
                               "open_s": round(time.perf_counter() - t, 2)}
        t = time.perf_counter()
        for d in parts.values():
            if hasattr(d, "check_features"):
                d.check_features()
        out["verify_s"] = round(time.perf_counter() - t, 2)
        _evict(_feature_store(ctx) / "segments")
        loader = multitask_loader(parts, tokenizer, 60, num_workers=workers)
        out.update(start_anon_mb=round(_status_mb("RssAnon"), 1), start_file_mb=round(_status_mb("RssFile"), 1))
        out["batches_per_epoch"] = len(loader)
        # stop before the epoch ends: an exhausted iterator has shut its workers down before memory is read
        want = min(ctx.options.get("loader_batches", 300), len(loader) - 2)
        t = time.perf_counter()
        it = iter(loader)
        next(it)
        out["first_batch_s"] = round(time.perf_counter() - t, 3)
        n, t = 0, time.perf_counter()
        for _, batch in zip(range(want), it, strict=False):
            n += batch.vis_feats.shape[0]
        dt = time.perf_counter() - t
        procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
        anon = sum(_status_mb("RssAnon", pr.pid) for pr in procs)
        file = sum(_status_mb("RssFile", pr.pid) for pr in procs)
        del it
        out.update(samples=n, samples_s=round(n / dt, 1), rss_anon_mb=round(anon, 1), rss_file_mb=round(file, 1),
                   delivered_mb=round(n * parts["vqa"]._reader.spec.np_dtype.itemsize *
                                      int(np.prod(parts["vqa"]._reader.spec.shape)) / 2**20, 1))
        return out

    return run


register("loader:tables", "loader", _loader_tables)
register("loader:w0", "loader", _loader(0))
register("loader:w2", "loader", _loader(2))


# ------------------------------------------------------------------------------------ measurement


def _serve(stage_names: list[str], root: Path, fraction: float, options: dict[str, Any]) -> None:
    """Run ``stage_names`` in order, each in a forked child of this process; one JSON line per stage.

    The project is imported once here (importing ``vlpet`` loads torch: ~20 s on a loaded 2-core box), then
    every stage runs in a fresh fork, so its peak RSS (``ru_maxrss`` from ``wait4``) is its own: it starts
    from the imported interpreter (``base_rss_mb``) and nothing a previous stage allocated.
    """
    for module in ("pyarrow", "pyarrow.compute", "numpy", "pipelines.prepare", "pipelines.tasks.build",
                   "features.store"):
        __import__(module)  # imports are not the stage's memory: load them before the fork
    # A fork's RSS starts from our anonymous pages (file-backed ones, e.g. torch's libraries, count only once
    # the child touches them), so that is the stage's starting point, not our peak or our VmRSS.
    base_mb = round(_status_mb("RssAnon"), 1)
    for name in stage_names:
        stage = next(s for s in STAGES if s.name == name)
        read_fd, write_fd = os.pipe()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the stage's own process
            os.close(read_fd)
            code = 0
            try:
                extra = stage.run(Context(root, fraction, options)) or {}
            except BaseException as exc:  # reported, not raised: the next stages still run
                extra, code = {"error": f"{type(exc).__name__}: {exc}"[:500]}, 1
            with os.fdopen(write_fd, "w") as out:
                out.write(json.dumps(extra))
            os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd) as inp:
            extra = json.loads(inp.read() or '{"error": "stage process died"}')
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if status != 0 and "error" not in extra:
            extra["error"] = f"exit status {status}"
        print(json.dumps({"stage": name, "wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                          "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "base_rss_mb": base_mb, **extra}),
              flush=True)


def run_stages(stages: list[str], root: Path, fraction: float, options: dict[str, Any], code: Path,
               on_result: Callable[[str, dict[str, Any]], None]) -> None:
    """``stages`` in a stage server importing the project from ``code``; ``on_result`` per finished stage."""
    env = dict(os.environ, PYTHONPATH=str(code), **{CODE_ENV: str(code)})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", ",".join(stages), "--root", str(root),
           "--fractions", str(fraction), "--options", json.dumps(options)]
    done: set[str] = set()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            if line.startswith("{"):
                r = json.loads(line)
                done.add(r["stage"])
                on_result(r.pop("stage"), r)
        err = proc.stderr.read()
    for name in stages:
        if name not in done:
            on_result(name, {"error": (err.strip().splitlines() or ["stage server died"])[-1]})


def growth_exponent(fractions: list[float], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(fraction); None with fewer than two positive points."""
    pts = [(math.log(f), math.log(v)) for f, v in zip(fractions, values, strict=True) if v and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return None if sxx == 0 else round(sum((x - mx) * (y - my) for x, y in pts) / sxx, 2)


def _commit_of(code: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        marker = code / "COMMIT"
        return marker.read_text().strip() if marker.is_file() else "unknown"


def _fmt(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "ERROR"
    return f"{r['wall_s']:.1f}s {r['cpu_s']:.1f}c {r['peak_rss_mb']:.0f}MB"


def report(results: dict[str, dict[str, dict[str, Any]]], baseline: dict[str, dict[str, dict[str, Any]]],
           fractions: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Print the stage x size table, the growth exponents and the after/before ratios; return the last two."""
    keys = [f"{f:g}" for f in fractions]
    print(f"\n{'stage':<22}" + "".join(f"{k:>26}" for k in keys) + "   exp(wall) exp(cpu) exp(mem)")
    exponents: dict[str, dict[str, float | None]] = {}
    for name, by_size in results.items():
        ok = [(float(k), by_size[k]) for k in keys if k in by_size and "error" not in by_size[k]]
        fr = [f for f, _ in ok]
        exp = {"wall": growth_exponent(fr, [r["wall_s"] for _, r in ok]),
               "cpu": growth_exponent(fr, [r["cpu_s"] for _, r in ok]),
               "mem": growth_exponent(fr, [r["peak_rss_mb"] - r["base_rss_mb"] for _, r in ok])}
        exponents[name] = exp
        print(f"{name:<22}" + "".join(f"{_fmt(by_size.get(k)):>26}" for k in keys)
              + "".join(f"{'-' if v is None else v:>9}" for v in exp.values()))
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    if baseline:
        print("\nafter / before (peak RSS and wall time ratios):")
        for name, by_size in baseline.items():
            for k in keys:
                b, a = by_size.get(k), results[name].get(k)
                if not b or not a or "error" in b or "error" in a:
                    continue
                ratios.setdefault(name, {})[k] = {m: round(a[m] / b[m], 3) for m in ("wall_s", "cpu_s", "peak_rss_mb")}
                print(f"  {name:<22} {k:>6}: before {_fmt(b)}  after {_fmt(a)}  "
                      f"peak RSS x{ratios[name][k]['peak_rss_mb']:.2f}, wall x{ratios[name][k]['wall_s']:.2f}")
    return exponents, ratios


def merge(paths: list[Path]) -> tuple[dict[str, Any], list[float]]:
    """The ``results`` of several runs' last JSON lines (e.g. one run per fraction), merged."""
    merged: dict[str, dict[str, Any]] = {}
    fractions: set[float] = set()
    for path in paths:
        lines = [line for line in path.read_text().splitlines() if line.startswith('{"bench": "scale"')]
        summary = json.loads(lines[-1])
        fractions.update(summary["fractions"])
        for name, by_size in summary["results"].items():
            merged.setdefault(name, {}).update(by_size)
    return merged, sorted(fractions)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.01])
    ap.add_argument("--root", type=Path, default=Path("/tmp/vlpet-scale"), help="data root (one folder per fraction)")
    ap.add_argument("--stages", default=".*", help="regex over stage names")
    ap.add_argument("--code", type=Path, default=REPO, help="checkout to import the project from")
    ap.add_argument("--baseline-code", type=Path, help="second checkout, run for --baseline-stages too")
    ap.add_argument("--baseline-stages", default="prepare:(gqa|vqa)$|build:vqa$")
    ap.add_argument("--full-width-max", type=int, default=20_000, help="rows stored at (49, 2048); thinner above")
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--cold-batch", type=int, default=64, help="rows per get_many in store:read-cold-batch")
    ap.add_argument("--loader-batches", type=int, default=300, help="batches timed by the loader:* stages")
    ap.add_argument("--cold-batches", type=int, default=40, help="batches per cold phase of store:read-cold-batch")
    ap.add_argument("--report", type=Path, nargs="+", help="print the table of earlier runs' logs (merged)")
    ap.add_argument("--report-before", type=Path, nargs="*", default=[], help="logs of the baseline code's runs")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve:
        _serve(args.serve.split(","), args.root, args.fractions[0], json.loads(args.options))
        return 0

    if args.report:
        results, fractions = merge(args.report)
        before, _ = merge(args.report_before) if args.report_before else ({}, [])
        baseline = {name: by_size for name, by_size in before.items() if name in results}
        exponents, ratios = report(results, baseline, fractions)
        print(json.dumps({"bench": "scale", "fractions": fractions, "results": results, "baseline": baseline,
                          "ratios": ratios, "exponents": exponents}))
        return 0

    sys.path.insert(0, str(BENCH))
    import scale_data

    options = {"full_width_max": args.full_width_max, "reads": args.reads, "cold_batch": args.cold_batch,
               "cold_batches": args.cold_batches, "loader_batches": args.loader_batches}
    selected = [s for s in STAGES if re.search(args.stages, s.name)]
    with_base = [s.name for s in selected if args.baseline_code and re.search(args.baseline_stages, s.name)]
    results: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in selected}
    baseline: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in with_base}
    generated: dict[str, Any] = {}
    for fraction in args.fractions:
        root = args.root / f"f{fraction:g}"
        t0 = time.perf_counter()
        info = scale_data.generate(root, fraction)
        generated[f"{fraction:g}"] = {"json_mb": round(info["json_bytes"] / 2**20, 1),
                                      "generate_s": round(time.perf_counter() - t0, 1)}
        print(f"# fraction {fraction:g}: {info['json_bytes'] / 2**20:.0f} MB of annotation JSON under {root}",
              flush=True)
        for label, code, sink, names in (("after", args.code, results, [s.name for s in selected]),
                                         ("before", args.baseline_code, baseline, with_base)):
            if not names:
                continue

            def record(name: str, r: dict[str, Any], sink: dict = sink, label: str = label,
                       fraction: float = fraction) -> None:
                sink[name][f"{fraction:g}"] = r
                print(f"{name:<22} {fraction:>6g} {label:<6} {json.dumps(r)}", flush=True)

            run_stages(names, root, fraction, options, code, record)

    exponents, ratios = report(results, baseline, args.fractions)
    summary = {"bench": "scale", "fractions": args.fractions, "machine": f"{platform.node()} {os.cpu_count()} cpus",
               "commit": _commit_of(args.code), "baseline_commit": _commit_of(args.baseline_code)
               if args.baseline_code else None, "generated": generated, "results": results,
               "baseline": baseline, "ratios": ratios, "exponents": exponents}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    code_root = os.environ.get(CODE_ENV)
    sys.path.insert(0, code_root or str(REPO))
    raise SystemExit(main())
