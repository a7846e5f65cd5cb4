"""Multi-task loader throughput: memory-mapped task tables + feature store vs one HDF5 file per sample.

Same data, same run, same batches (``MultiTaskBatchSampler`` keys): the store path gathers each batch's features
from the mapped segments (``pipelines.tasks.TaskDataset``, one ``get_many`` per batch); the baseline is the VL-T5
layout, one ``.h5`` per image opened with h5py in ``__getitem__``. Both collate the same way (stack features,
keep the text), so the difference is the I/O path. Each configuration runs a cold first pass (page cache of its
files evicted with ``posix_fadvise(DONTNEED)``, no root needed) and warm steady-state passes.

``us_per_sample`` = time per sample minus a plain memcpy of that sample's features (the floor any loader pays).

The store runs twice: with the readers' segment verification (each segment's sha256 checked once per process
when first mapped, the default) and without (``VERIFY_ON_MAP = False``); ``verify_over_noverify`` is the ratio
of their rates (the hashing is paid in the cold pass; warm passes should not see it).

Warm steady state is measured in blocks: a configuration runs ``--warm-passes`` passes back to back (plus one
uncounted pass first that re-warms what the others displaced), as a training loader does; ``--warm-rounds``
rounds alternate the configurations (rotating their order), so a change in the machine's load hits all of them
alike. Each configuration's best counted pass is reported. (Interleaving single passes instead put an h5 pass
before every store pass; that alone made the store's warm passes 10-20% slower, verification on or off.)

``--text`` (default) also times the full text + collate pipeline (``MultiTaskCollator``: tokenize, ``VLBatch``,
fp32 features) with 0 and 2 workers; each warm pass also reports CPU time per sample over all processes
(on a shared machine the rate depends on the other jobs, the CPU time much less).
Figures (before/after issue 18, same session): bench/RESULTS.md.

Usage: ``python bench/loader.py [--n 1000] [--feat 2048] [--workers 0 2] [--no-text] [--dir DIR]``; last line is
JSON. ``VLPET_BENCH_SRC=TREE`` times the project code in TREE (e.g. a ``git archive`` of main) instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# VLPET_BENCH_SRC: import the project from another tree (e.g. a `git archive` of main) to time the code before
# a change with this same benchmark
sys.path.insert(0, os.environ.get("VLPET_BENCH_SRC") or str(Path(__file__).resolve().parents[1]))

import h5py
import numpy as np
import psutil
import torch
import torch.utils.data
from pagecache import evict  # bench/ sibling (the script's own directory is on sys.path)

import features.store.reader as reader_mod
from features.media import MediaItem
from features.store import FeatureStore, StoreSpec
from pipelines.tables.arrow_io import write_table
from pipelines.tables.schemas import CAPTION_SCHEMA, NLVR2_SCHEMA, VQA_SCHEMA, build_table
from pipelines.tasks import MultiTaskBatchSampler, MultiTaskCollator, MultiTaskDataset, TaskDataset, build_task_table
from vlpet.batch import VLBatch, task_batch_sizes

try:
    from vlpet.batch import stack_features
except ImportError:  # a tree from before stack_features: always one stacked copy

    def stack_features(arrays):
        return torch.from_numpy(np.stack(arrays))


def _items(n: int) -> list[MediaItem]:
    return [MediaItem(f"img{i:06d}", f"img{i:06d}.jpg", hashlib.sha256(b"%d" % i).hexdigest(), "image", 1000)
            for i in range(n)]


def _feat(i: int, f: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((49, f), dtype=np.float32).astype(np.float16)


def _unified_tables(base: Path, ids: list[str]) -> dict[str, Path]:
    """Small VQA/GQA/NLVR2/COCO unified tables over the same images (texts are short synthetic strings)."""
    n = len(ids)
    out = {}
    for task in ("vqa", "gqa"):
        cols = {"question_id": [f"{task}{i}" for i in range(n)], "image_id": ids, "question": ["what is it?"] * n,
                "answers": [[{"answer": "yes", "score": 1.0}, {"answer": "no", "score": 0.3}]] * n,
                "answer_type": [None] * n, "question_type": [None] * n, "raw_answers": [None] * n,
                "is_topk_optimal": [None] * n}
        t = build_table(cols, VQA_SCHEMA).append_column("media_id", [ids])
        out[task] = write_table(t, base / f"{task}.arrow")
    half = n // 2
    cols = {"identifier": [f"p{i}" for i in range(half)], "split": ["train"] * half, "img0": ids[:half],
            "img1": ids[half:2 * half], "sentence": ["two dogs."] * half, "label": [i % 2 == 0 for i in range(half)]}
    cols.update({k: [None] * half for k in ("left_url", "right_url", "uid", "writer", "synset", "query")})
    t = build_table(cols, NLVR2_SCHEMA).append_column("media_id0", [ids[:half]]).append_column("media_id1",
                                                                                              [ids[half:2 * half]])
    out["nlvr2"] = write_table(t, base / "nlvr2.arrow")
    cols = {"image_id": ids, "cocoid": list(range(n)), "filepath": ["x"] * n, "filename": ids, "split": ["train"] * n,
            "karpathy_split": ["train"] * n, "captions": [["a dog.", "a cat."]] * n, "sentids": [[0, 1]] * n}
    out["coco"] = write_table(build_table(cols, CAPTION_SCHEMA).append_column("media_id", [ids]), base / "coco.arrow")
    return out


def prepare(base: Path, n: int, f: int) -> tuple[dict[str, Path], Path, Path]:
    items = _items(n)
    store_path, h5_dir = base / "store", base / "h5"
    h5_dir.mkdir(parents=True, exist_ok=True)
    store = FeatureStore.open_or_create(store_path, StoreSpec(extractor="bench", shape=(49, f), dtype="float16"))
    plan = store.plan(items)
    run = store.begin_run(plan=plan)
    with run.shard_writer("0") as w:
        for i, it in enumerate(items):
            arr = _feat(i, f)
            w.add(it, arr)
            with h5py.File(h5_dir / f"{it.media_id}.h5", "w") as h:
                h.create_dataset("features", data=arr)
    store.commit(run, items, {"weights": "bench", "random_init": True, "device": "cpu"})
    unified = _unified_tables(base, [it.media_id for it in items])
    tables = {}
    for task, path in unified.items():
        tables[task] = base / "tasks" / f"{task}.arrow"
        build_task_table(task, "train", path, store_path, tables[task])
    return tables, store_path, h5_dir


class H5Dataset(torch.utils.data.Dataset):
    """Baseline: text from Python lists, features from one HDF5 file per image opened in ``__getitem__``."""

    def __init__(self, tables: dict[str, Path], h5_dir: Path) -> None:
        self.h5_dir = h5_dir
        self.rows = {}
        for task, path in tables.items():
            d = TaskDataset(path)  # same example->row expansion (captions) as the store path
            media, text = d.column("media_ids"), d.column("text")
            self.rows[task] = [(media[r], text[r] or "") for r in map(d.row_of, range(len(d)))]

    def __getitem__(self, key: tuple[str, int, int]) -> dict[str, Any]:
        task, index, _ = key
        media, text = self.rows[task][index]
        feats = []
        for m in media:
            with h5py.File(self.h5_dir / f"{m}.h5", "r") as h:
                feats.append(h["features"][()])
        return {"task": task, "text": text, "vis": feats[0] if len(feats) == 1 else np.stack(feats)}

    def __len__(self) -> int:
        return sum(len(v) for v in self.rows.values())


def stack_collate(examples: Any) -> tuple[torch.Tensor, list[str]]:
    """Same for both paths: the features as one batch tensor (``stack_features``: one copy of separate
    arrays, none when the dataset already gathered the batch into one array), texts kept. A columnar batch
    (``vlpet.batch.ExampleBatch``, what ``TaskDataset.batch`` returns) already holds both."""
    if hasattr(examples, "vis") and not isinstance(examples.vis, list):
        return torch.from_numpy(examples.vis), examples.text
    return stack_features([e["vis"] for e in examples]), [e["text"] for e in examples]


def make_loader(dataset: torch.utils.data.Dataset, sampler: MultiTaskBatchSampler, workers: int,
                collate_fn: Any = stack_collate) -> torch.utils.data.DataLoader:
    """Persistent workers: passes after the first do not pay worker start-up (that is not loader throughput)."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                                       num_workers=workers, persistent_workers=workers > 0)


def bench_tokenizer() -> Any:
    """A small byte-level BPE trained here (no hub access in the benchmark); real vocabularies tokenize
    these short texts at a similar per-call cost."""
    from vlpet.tokenization import train_tokenizer

    texts = ["what is it?", "two dogs.", "a dog.", "a cat.", "yes", "no", "what color is the bus?"] * 50
    return train_tokenizer(texts, "bart", vocab_size=400)


def cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers) together."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


LAST_CPU: list[float] = []


def one_pass(loader: torch.utils.data.DataLoader, epoch: int) -> tuple[float, int, float]:
    """(seconds after the first batch, samples after the first batch, seconds to the first batch); the CPU
    seconds (all processes) after the first batch go to ``LAST_CPU``: on a shared machine, CPU per sample
    is the cost that does not depend on how much of the CPU the other jobs left us.

    The rate excludes the first batch so worker start-up (seconds under forkserver/spawn) does not swamp it.
    """
    loader.batch_sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    t_first, n, n_first, cpu0 = None, 0, 0, 0.0
    for batch in loader:
        feats = batch.vis_feats if isinstance(batch, VLBatch) else batch[0]
        n += feats.shape[0] * (feats.shape[1] if feats.dim() == 4 else 1)
        if t_first is None:  # read the CPU clocks first: it scans /proc (~1 ms), not part of the timed window
            cpu0 = cpu_seconds()
            t_first, n_first = time.perf_counter(), n
    end = time.perf_counter()
    LAST_CPU[:] = [cpu_seconds() - cpu0]
    return end - t_first, n - n_first, t_first - t0


def memcpy_us(f: int, reps: int = 2000) -> float:
    src = _feat(0, f)
    dst = np.empty_like(src)
    t0 = time.perf_counter()
    for _ in range(reps):
        np.copyto(dst, src)
    return (time.perf_counter() - t0) / reps * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images (each (49, feat) float16)")
    ap.add_argument("--feat", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=60, help="base batch size B")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--warm-passes", type=int, default=3, help="counted passes per warm block")
    ap.add_argument("--warm-rounds", type=int, default=2, help="warm blocks per configuration")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--text", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the full text + collate pipeline (MultiTaskCollator: tokenize, VLBatch)")
    a = ap.parse_args(argv)
    base = a.dir or Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        t0 = time.perf_counter()
        tables, store_path, h5_dir = prepare(base, a.n, a.feat)
        print(f"prepared {a.n} images x (49, {a.feat}) fp16 in {time.perf_counter() - t0:.1f}s under {base}",
              flush=True)
        store_files = sorted((store_path / "segments").glob("*.arrow")) + list(tables.values())
        h5_files = sorted(h5_dir.glob("*.h5"))
        mt = MultiTaskDataset({t: TaskDataset(p) for t, p in tables.items()})
        h5 = H5Dataset(tables, h5_dir)

        def fresh_store(verify: bool) -> MultiTaskDataset:
            """New readers with segment verification on or off; "on" starts with nothing verified yet."""
            reader_mod.VERIFY_ON_MAP = verify
            if hasattr(reader_mod, "_VERIFIED"):  # trees from before issue 16 verify nothing: on = off
                reader_mod._VERIFIED.clear()
            return MultiTaskDataset({t: TaskDataset(p) for t, p in tables.items()})

        sizes = mt.sizes()
        bs = task_batch_sizes(a.batch, list(sizes))
        copy_us = memcpy_us(a.feat)
        results: dict[str, Any] = {"n_images": a.n, "feat": a.feat, "batch_sizes": bs, "memcpy_us": round(copy_us, 2)}
        for workers in a.workers:
            row: dict[str, Any] = {}
            configs = (("store", "verify-on", store_files), ("store_noverify", "verify-off", store_files),
                       ("h5", h5, h5_files))
            loaders = {}
            for name, data, files in configs:  # cold passes one after the other (the readers open here) ...
                if isinstance(data, str):
                    data = fresh_store(data == "verify-on")
                loaders[name] = make_loader(data, MultiTaskBatchSampler(sizes, bs, seed=0), workers)
                evict(files)
                cold_s, n, first_s = one_pass(loaders[name], 0)
                row[name] = {"cold_samples_s": n / cold_s, "first_batch_s": first_s, "warm": [], "cpu": []}
            names = list(loaders)
            epoch = 1
            for r in range(a.warm_rounds):  # ... then warm blocks: rounds alternate the configurations (load
                first = r % len(names)  # drift hits all alike; the order rotates), and within a block one
                for name in names[first:] + names[:first]:  # configuration runs back to back, as in training
                    for k in range(a.warm_passes + 1):
                        s_, m, _ = one_pass(loaders[name], epoch)
                        epoch += 1
                        if k:  # a block's first pass re-warms what the other configurations displaced
                            row[name]["warm"].append(m / s_)
                            row[name]["cpu"].append(LAST_CPU[0] / m)
            for name in loaders:
                row[name]["warm_samples_s"] = max(row[name].pop("warm"))
                row[name]["warm_cpu_us"] = min(row[name].pop("cpu")) * 1e6
            del loaders
            for phase in ("cold", "warm"):
                s, h = row["store"][f"{phase}_samples_s"], row["h5"][f"{phase}_samples_s"]
                results[f"w{workers}_{phase}"] = {
                    "samples_s": round(s, 1), "h5_samples_s": round(h, 1), "speedup_vs_h5": round(s / h, 2),
                    "us_per_sample": round(1e6 / s - copy_us, 1), "h5_us_per_sample": round(1e6 / h - copy_us, 1)}
                results[f"w{workers}_first_batch_s"] = {k: round(row[k]["first_batch_s"], 3) for k in ("store", "h5")}
                off = row["store_noverify"][f"{phase}_samples_s"]
                results[f"w{workers}_{phase}"].update(noverify_samples_s=round(off, 1),
                                                      verify_over_noverify=round(s / off, 3))
                print(f"workers={workers} {phase}: store {s:,.0f} samples/s (segment verification on; off: "
                      f"{off:,.0f}, ratio {s / off:.3f}), h5 {h:,.0f} samples/s, x{s / h:.2f}", flush=True)
            results[f"w{workers}_warm"].update(
                cpu_us_per_sample=round(row["store"]["warm_cpu_us"], 1),
                h5_cpu_us_per_sample=round(row["h5"]["warm_cpu_us"], 1),
                cpu_speedup_vs_h5=round(row["h5"]["warm_cpu_us"] / row["store"]["warm_cpu_us"], 2))
            print(f"workers={workers} warm CPU per sample (all processes): store "
                  f"{row['store']['warm_cpu_us']:.0f} us, h5 {row['h5']['warm_cpu_us']:.0f} us, "
                  f"x{row['h5']['warm_cpu_us'] / row['store']['warm_cpu_us']:.2f}", flush=True)
        if a.text:
            collator = MultiTaskCollator(bench_tokenizer())
            for workers in a.workers:
                loader = make_loader(mt, MultiTaskBatchSampler(sizes, bs, seed=0), workers, collator)
                one_pass(loader, 0)
                rates, cpu = [], []
                for e in range(1, 1 + a.warm_passes):
                    s_, m_, _ = one_pass(loader, e)
                    rates.append(m_ / s_)
                    cpu.append(LAST_CPU[0] / m_ * 1e6)
                results[f"text_w{workers}_warm_samples_s"] = round(max(rates), 1)
                results[f"text_w{workers}_cpu_us_per_sample"] = round(min(cpu), 1)
                print(f"workers={workers} text+collate (tokenize, VLBatch, fp32 features) warm: store "
                      f"{max(rates):,.0f} samples/s, {min(cpu):.0f} us CPU per sample", flush=True)
                del loader
            if {0, 2} <= set(a.workers):
                results["text_w2_over_w0"] = round(results["text_w2_warm_samples_s"] /
                                                   results["text_w0_warm_samples_s"], 2)
        if {0, 2} <= set(a.workers):
            results["w2_over_w0_warm"] = round(results["w2_warm"]["samples_s"] / results["w0_warm"]["samples_s"], 2)
        print(json.dumps(results))
    finally:
        if a.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
