"""Feature-store benchmark: the project's Arrow IPC segment store vs Zarr v3 layouts, in the same run.

What it measures, for N samples of shape (49, 2048) float16 (CLIP RN101 grid features; default N=2000,
about 400 MB), all layouts written from the same in-memory array:

- **write**: seconds and MB/s to write the N samples and make them readable. Arrow store: the full path
  the extractor uses (``plan`` -> ``begin_run`` -> ``ShardWriter.add`` x N with 256-row segments ->
  ``commit``, including sha256 of every sample and segment, fsyncs, the commit's re-hash of staged
  segments and the index). Zarr v3: ``zarr.create_array`` + 256-row block writes + a JSON id->row index;
  ``zarr``: one chunk per sample (1, 49, 2048), default codec (zstd); ``zarr_sharded``: the same chunks
  inside 256-sample shards (``shards=(256, 49, 2048)``), default codec;
- **random single-row read latency**: ``--reads`` random samples by media id, one at a time (median and p95
  in microseconds). Arrow: ``reader.get(id)`` returns a zero-copy read-only view (``arrow_row_view``), and
  ``np.array(view)`` copies it out (``arrow_row_copy``, what a collate does; the fair comparison with Zarr,
  which returns a freshly decoded array);
- **256-row batch fetch**: 256 random ids -> one stacked (256, 49, 2048) array (median of ``--repeats``
  in ms). Arrow: ``reader.get_many``; Zarr: ``oindex`` (orthogonal selection) on the sorted rows, then
  put back in the requested order;
- **open time**: open a fresh reader and read the first sample (median of 20, ms): Arrow: read the
  manifest and index, map one segment; Zarr: ``zarr.open_array`` + read the JSON index + one chunk;
- size on disk and file count, and (Arrow) the time of a full ``verify`` (re-hash of every byte).

The page cache is warm (files were just written); no root here to drop caches, so these are in-memory
read costs, not disk latency. Results are checked against the source array. Run it with::

    .venv/bin/python bench/store.py                 # 2000 rows
    .venv/bin/python bench/store.py --rows 500 --reads 300

It prints a table, then as its last line one JSON object of named figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (49, 2048)
BLOCK = 256


def _dir_size(path: Path) -> tuple[int, int]:
    total = files = 0
    seen = set()
    for dirpath, _d, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
            files += 1
    return total, files


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def bench_arrow(root: Path, data: np.ndarray, ids: list[str], read_ids: list[str], batches: list[list[str]],
                pos: dict[str, int]) -> dict:
    from features.media import MediaItem
    from features.store import FeatureStore, StoreSpec

    n = len(ids)
    items = [MediaItem(m, f"{m}.jpg", hashlib.sha256(m.encode()).hexdigest(), "image", 1000) for m in ids]
    spec = StoreSpec("clip-rn101-grid", SHAPE, "float16", params={"image_size": 224, "bench": True})
    t0 = time.perf_counter()
    store = FeatureStore.open_or_create(root, spec)
    plan = store.plan(items)
    run = store.begin_run()
    with run.shard_writer("0", flush_rows=BLOCK) as w:
        for it, i in zip(plan.to_extract, range(n), strict=True):
            w.add(it, data[i])
    t_staged = time.perf_counter()
    snap = store.commit(run, items, {"weights": "bench", "random_init": True})
    t1 = time.perf_counter()
    out = {"write_s": t1 - t0, "commit_s": t1 - t_staged}

    reader = FeatureStore.open_reader(root)
    reader.get(ids[0])
    lat_view, lat_copy = [], []
    for m in read_ids:
        t = time.perf_counter()
        v = reader.get(m)
        t2 = time.perf_counter()
        c = np.array(v)
        t3 = time.perf_counter()
        lat_view.append(t2 - t)
        lat_copy.append(t3 - t)
        assert c[0, 0] == data[pos[m]][0, 0]
    out["row_view_us"] = [statistics.median(lat_view) * 1e6, _pct(lat_view, 0.95) * 1e6]
    out["row_copy_us"] = [statistics.median(lat_copy) * 1e6, _pct(lat_copy, 0.95) * 1e6]
    v = reader.get(read_ids[0])
    out["zero_copy"] = bool(not v.flags.writeable and not v.flags.owndata)
    bt = []
    for b in batches:
        t = time.perf_counter()
        arr = reader.get_many(b)
        bt.append(time.perf_counter() - t)
        assert arr.shape == (len(b), *SHAPE)
        assert np.array_equal(arr[-1], data[pos[b[-1]]])
    out["batch_ms"] = statistics.median(bt) * 1e3
    ot = []
    for _ in range(20):
        t = time.perf_counter()
        r = FeatureStore.open_reader(root)
        r.get(ids[n // 2])
        ot.append(time.perf_counter() - t)
    out["open_ms"] = statistics.median(ot) * 1e3
    t = time.perf_counter()
    rep = store.verify()
    out["verify_s"] = time.perf_counter() - t
    assert rep.ok, rep.problems
    out["size"], out["files"] = _dir_size(root)
    out["snapshot"] = snap.id
    return out


def bench_zarr(root: Path, data: np.ndarray, ids: list[str], read_ids: list[str], batches: list[list[str]],
               pos: dict[str, int], sharded: bool) -> dict:
    import zarr

    n = len(ids)
    t0 = time.perf_counter()
    kw = {"shards": (BLOCK, *SHAPE)} if sharded else {}
    z = zarr.create_array(store=str(root / "feat.zarr"), shape=(n, *SHAPE), chunks=(1, *SHAPE), dtype="float16",
                          zarr_format=3, **kw)
    for i in range(0, n, BLOCK):
        z[i:i + BLOCK] = data[i:i + BLOCK]
    (root / "index.json").write_text(json.dumps({m: i for i, m in enumerate(ids)}))
    out = {"write_s": time.perf_counter() - t0}

    z = zarr.open_array(str(root / "feat.zarr"), mode="r")
    index = json.loads((root / "index.json").read_text())
    z[0]
    lat = []
    for m in read_ids:
        t = time.perf_counter()
        a = z[index[m]]
        lat.append(time.perf_counter() - t)
        assert a[0, 0] == data[pos[m]][0, 0]
    out["row_us"] = [statistics.median(lat) * 1e6, _pct(lat, 0.95) * 1e6]
    bt = []
    for b in batches:
        t = time.perf_counter()
        rows = np.array([index[m] for m in b])
        order = np.argsort(rows, kind="stable")  # zarr reads sorted selections faster; restore the order after
        sel = z.oindex[rows[order]]
        arr = np.empty_like(sel)
        arr[order] = sel
        bt.append(time.perf_counter() - t)
        assert arr.shape == (len(b), *SHAPE)
        assert np.array_equal(arr[-1], data[pos[b[-1]]])
    out["batch_ms"] = statistics.median(bt) * 1e3
    ot = []
    for _ in range(20):
        t = time.perf_counter()
        zz = zarr.open_array(str(root / "feat.zarr"), mode="r")
        idx = json.loads((root / "index.json").read_text())
        zz[idx[ids[n // 2]]]
        ot.append(time.perf_counter() - t)
    out["open_ms"] = statistics.median(ot) * 1e3
    out["size"], out["files"] = _dir_size(root)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--reads", type=int, default=1000, help="random single-row reads per layout")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="256-row batch fetches per layout")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pyarrow
    import zarr

    n = args.rows
    rng = np.random.default_rng(args.seed)
    data = rng.standard_normal((n, *SHAPE), dtype=np.float32).astype(np.float16)
    mb = data.nbytes / 1e6
    ids = [f"img{i:07d}" for i in range(n)]
    pos = {m: i for i, m in enumerate(ids)}
    read_ids = [ids[i] for i in rng.integers(0, n, args.reads)]
    batches = [[ids[i] for i in rng.choice(n, args.batch, replace=False)] for _ in range(args.repeats)]

    base = Path(tempfile.mkdtemp(prefix="vlpet-bench-store-", dir=args.dir))
    try:
        res = {}
        t_all = time.perf_counter()
        res["arrow"] = bench_arrow(base / "arrow", data, ids, read_ids, batches, pos)
        for name, sharded in (("zarr", False), ("zarr_sharded", True)):
            (base / name).mkdir()
            res[name] = bench_zarr(base / name, data, ids, read_ids, batches, pos, sharded)
        total = time.perf_counter() - t_all
    finally:
        shutil.rmtree(base, ignore_errors=True)

    a, z, zs = res["arrow"], res["zarr"], res["zarr_sharded"]
    print(f"{n} rows x {SHAPE} float16 = {mb:.0f} MB; pyarrow {pyarrow.__version__}, zarr {zarr.__version__}, "
          f"numpy {np.__version__}; warm page cache; {os.cpu_count()} CPUs")
    head = f"{'layout':<14}{'write s':>9}{'MB/s':>8}{'row med us':>12}{'row p95 us':>12}{'256-row ms':>12}" \
           f"{'open ms':>9}{'size MB':>9}{'files':>7}"
    print(head)
    print("-" * len(head))
    rows = [("arrow (view)", a, a["row_view_us"]), ("arrow (copy)", a, a["row_copy_us"]),
            ("zarr", z, z["row_us"]), ("zarr sharded", zs, zs["row_us"])]
    for label, r, lat in rows:
        print(f"{label:<14}{r['write_s']:>9.2f}{mb / r['write_s']:>8.0f}{lat[0]:>12.1f}{lat[1]:>12.1f}"
              f"{r['batch_ms']:>12.1f}{r['open_ms']:>9.2f}{r['size'] / 1e6:>9.1f}{r['files']:>7}")
    print(f"arrow: commit {a['commit_s']:.2f} s of the write; verify (re-hash everything) {a['verify_s']:.2f} s; "
          f"zero-copy read-only views: {a['zero_copy']}; bench wall {total:.1f} s")
    summary = {
        "rows": n, "shape": list(SHAPE), "dtype": "float16", "mb": round(mb, 1),
        "arrow_write_s": round(a["write_s"], 3), "arrow_write_mb_s": round(mb / a["write_s"], 1),
        "arrow_commit_s": round(a["commit_s"], 3),
        "zarr_write_s": round(z["write_s"], 3), "zarr_write_mb_s": round(mb / z["write_s"], 1),
        "zarr_sharded_write_s": round(zs["write_s"], 3), "zarr_sharded_write_mb_s": round(mb / zs["write_s"], 1),
        "arrow_row_view_us_median": round(a["row_view_us"][0], 1),
        "arrow_row_view_us_p95": round(a["row_view_us"][1], 1),
        "arrow_row_copy_us_median": round(a["row_copy_us"][0], 1),
        "arrow_row_copy_us_p95": round(a["row_copy_us"][1], 1),
        "zarr_row_us_median": round(z["row_us"][0], 1), "zarr_row_us_p95": round(z["row_us"][1], 1),
        "zarr_sharded_row_us_median": round(zs["row_us"][0], 1),
        "arrow_batch256_ms": round(a["batch_ms"], 2), "zarr_batch256_ms": round(z["batch_ms"], 2),
        "zarr_sharded_batch256_ms": round(zs["batch_ms"], 2),
        "arrow_open_ms": round(a["open_ms"], 3), "zarr_open_ms": round(z["open_ms"], 3),
        "zarr_sharded_open_ms": round(zs["open_ms"], 3),
        "arrow_size_mb": round(a["size"] / 1e6, 1), "zarr_size_mb": round(z["size"] / 1e6, 1),
        "zarr_sharded_size_mb": round(zs["size"] / 1e6, 1),
        "arrow_files": a["files"], "zarr_files": z["files"], "zarr_sharded_files": zs["files"],
        "arrow_verify_s": round(a["verify_s"], 3), "arrow_zero_copy": a["zero_copy"],
        "row_copy_speedup_vs_zarr": round(z["row_us"][0] / a["row_copy_us"][0], 2),
        "batch256_speedup_vs_zarr": round(z["batch_ms"] / a["batch_ms"], 2),
        "bench_wall_s": round(total, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
