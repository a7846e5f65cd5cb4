"""Shared helpers of the feature-store tests (no tests here), also runnable as the extraction subprocess.

The "extractor" is fake and deterministic: a sample's features come from a RNG seeded by the sha256 of the
file's bytes, so two runs over the same bytes give the same features, bit for bit. Files whose name
contains ``bad`` fail to "decode" and are quarantined.

Run as a script (the crash and shard tests do)::

    python tests/features/test_store_support.py STORE MEDIA --kind image --sleep 0.05 --shard 0 --num-shards 1
        [--log FILE] [--flush-rows 4] [--no-commit]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


if __name__ == "__main__":  # run as a script by the crash tests: make the project importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from features.media import MediaItem, scan_media  # noqa: E402
from features.store import FeatureStore, StoreSpec  # noqa: E402

IMAGE_SPEC = StoreSpec(extractor="fake-grid", shape=(49, 64), dtype="float16", params={"seed": 0, "size": 224})
VIDEO_SPEC = StoreSpec(extractor="fake-video", shape=(None, 512), dtype="float16", ragged=True,
                       params={"fps": 1, "max_frames": 6})


def fake_features(data: bytes, spec: StoreSpec) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    if spec.ragged:
        frames = 1 + seed % 6
        return rng.standard_normal((frames, *spec.row_shape), dtype=np.float32).astype(spec.dtype)
    return rng.standard_normal(spec.shape, dtype=np.float32).astype(spec.dtype)


def write_media(root: Path, names: list[str], ext: str = ".jpg", version: int = 0) -> list[Path]:
    """Small files with deterministic, distinct bytes; ``version`` changes the bytes of the same name."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        p = root / f"{n}{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{n}/{version}".encode()).digest()[:8], "little"))
        p.write_bytes(b"FAKE" + rng.integers(0, 256, 64 + len(n), dtype=np.uint8).tobytes())
        out.append(p)
    return out


def extract(store_path: Path, media_root: Path, spec: StoreSpec = IMAGE_SPEC, *, shard: int = 0,
            num_shards: int = 1, sleep: float = 0.0, log: Path | None = None, flush_rows: int = 4,
            commit: bool = True, metadata: dict | None = None, counter: list | None = None):
    """The extraction engine in miniature: scan, plan, stage this shard (resuming), commit."""
    kind = "video" if spec.ragged else "image"
    items = scan_media(media_root, {".mp4": "video"} if kind == "video" else {".jpg": "image"})
    store = FeatureStore.open_or_create(store_path, spec)
    plan = store.plan(items)
    run = store.begin_run()
    with run.shard_writer(str(shard), flush_rows=flush_rows) as writer:
        done = writer.done_hashes()
        mine = plan.to_extract[shard::num_shards]
        logf = open(log, "a") if log else None
        try:
            for it in mine:
                if it.sha256 in done:
                    continue
                data = (media_root / it.rel_path).read_bytes()
                arr = None if "bad" in it.media_id else fake_features(data, spec)
                if sleep:
                    time.sleep(sleep)
                if counter is not None:  # count/log the extraction before handing it to the writer
                    counter.append(it.media_id)
                if logf:
                    logf.write(it.sha256 + "\n")
                    logf.flush()
                if arr is None:
                    writer.add_error(it, f"cannot decode {it.rel_path}: not a valid {kind}")
                else:
                    writer.add(it, arr)
        finally:
            if logf:
                logf.close()
    if not commit:
        return None
    return store.commit(run, items, metadata or {"weights": "sha256:fake", "random_init": False, "device": "cpu"})


def items_of(media_root: Path, kind: str = "image") -> list[MediaItem]:
    return scan_media(media_root, {".mp4": "video"} if kind == "video" else {".jpg": "image"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("store", type=Path)
    ap.add_argument("media", type=Path)
    ap.add_argument("--kind", default="image", choices=["image", "video"])
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--num-shards", type=int, default=1)
    ap.add_argument("--log", type=Path)
    ap.add_argument("--flush-rows", type=int, default=4)
    ap.add_argument("--no-commit", action="store_true")
    a = ap.parse_args(argv)
    snap = extract(a.store, a.media, VIDEO_SPEC if a.kind == "video" else IMAGE_SPEC, shard=a.shard,
                   num_shards=a.num_shards, sleep=a.sleep, log=a.log, flush_rows=a.flush_rows,
                   commit=not a.no_commit)
    print(snap.id if snap else "staged", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
