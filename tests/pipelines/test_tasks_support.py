"""Shared helpers of the task-table/loader tests (no tests here): real unified tables from the synthetic
generator, small fake feature stores written through the store's writer API, and built task tables."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from features.media import MediaItem
from features.store import FeatureStore, StoreSpec
from pipelines.fetch import fetch_dataset, write_sha256sums
from pipelines.prepare import prepare_dataset
from pipelines.sources import SOURCES
from pipelines.synth import generate
from pipelines.tables import read_table
from pipelines.tasks import build_task_table

IMAGE_F = 16
VIDEO_F = 8
# task -> (dataset, train split)
TASK_SPLITS = {
    "vqa": ("vqa", "karpathy_train"), "gqa": ("gqa", "train"), "nlvr2": ("nlvr2", "train"),
    "coco": ("coco", "train"), "tvqa": ("tvqa", "train"), "how2qa": ("how2qa", "train_release"),
    "tvc": ("tvc", "train_release"), "yc2c": ("yc2c", "train_release"),
}
VIDEO = {"tvqa", "how2qa", "tvc", "yc2c"}


def features_for(media_id: str, video: bool) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(media_id.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    if video:
        return rng.standard_normal((3 + seed % 90, VIDEO_F), dtype=np.float32).astype(np.float16)
    return rng.standard_normal((49, IMAGE_F), dtype=np.float32).astype(np.float16)


def make_store(path: Path, media_table: Path, video: bool, absent: set[str] = frozenset(),
               quarantined: set[str] = frozenset()) -> str:
    """A committed snapshot with fake features for every media of ``media_table`` except ``absent``."""
    spec = (StoreSpec(extractor="fake-video", shape=(None, VIDEO_F), dtype="float16", ragged=True) if video
            else StoreSpec(extractor="fake-grid", shape=(49, IMAGE_F), dtype="float16"))
    rows = read_table(media_table).to_pylist()
    items = [MediaItem(r["media_id"], r["rel_path"], r["sha256"], r["kind"], r["size"]) for r in rows
             if r["media_id"] not in absent]
    store = FeatureStore.open_or_create(path, spec)
    plan = store.plan(items)
    run = store.begin_run(plan=plan)
    with run.shard_writer("0") as w:
        for it in plan.to_extract:
            if it.media_id in quarantined:
                w.add_error(it, f"cannot decode {it.rel_path}")
            else:
                w.add(it, features_for(it.media_id, video))
    return store.commit(run, items, {"weights": "sha256:fake", "random_init": False, "device": "cpu"}).id


@lru_cache(maxsize=1)
def _prepared(base: str) -> Path:
    out, root = Path(base) / "mirror", Path(base) / "data"
    generate(out, "tiny", 0)
    for source in SOURCES:
        if (out / source).is_dir():
            write_sha256sums(out / source)
    datasets = sorted({d for d, _ in TASK_SPLITS.values()})
    for dataset in datasets:  # fetch all first: TVC's tables join TVQA's subtitle file
        fetch_dataset(dataset, root, mirror=out.resolve().as_uri(), progress=False, media_from=out / dataset)
    for dataset in datasets:
        prepare_dataset(dataset, root)
    return root


def build_all(base: Path) -> dict[str, Path]:
    """Task tables (train splits) for all eight tasks under ``base``; returns task -> task table path."""
    root = _prepared(str(base))
    out = {}
    for task, (dataset, split) in TASK_SPLITS.items():
        store = base / "stores" / dataset
        if not (store / "snapshots").is_dir():
            make_store(store, root / "tables" / dataset / "media.arrow", task in VIDEO)
        out[task] = base / "tasks" / task / f"{split}.arrow"
        build_task_table(task, split, root / "tables" / dataset / f"{split}.arrow", store, out[task])
    return out


def tiny_tokenizer():
    from vlpet.tokenization import train_tokenizer

    words = ("vqa gpa nlvr caption tvqa how2qa tvc yc2c [Subs] [Q] [TS] [Choices] a0 a1 a2 a3 a4 true false "
             "what how many color is the shapes circle square triangle red green blue orange purple")
    return train_tokenizer([words] * 4, "bart", vocab_size=400)


_SHARED: dict[str, object] = {}


def shared_build() -> tuple[Path, dict[str, Path]]:
    """One build per test process (the generator + 8 stores take a few seconds), in a temp dir removed at exit."""
    if "paths" not in _SHARED:
        import atexit
        import shutil
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="vlpet-tasks-"))
        atexit.register(shutil.rmtree, base, True)
        _SHARED["base"], _SHARED["paths"] = base, build_all(base)
    return _SHARED["base"], _SHARED["paths"]  # type: ignore[return-value]


def prepared_root(base: Path) -> Path:
    return _prepared(str(base))
