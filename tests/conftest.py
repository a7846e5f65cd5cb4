"""Shared fixtures: tiny tokenizers and models, fully offline."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXTS = [
    "vqa: what color is the circle?", "gpa: is the square left of the circle?", "nlvr: there are two red shapes",
    "caption:", "red", "blue", "true", "false", "a red circle left of a blue square", "yes", "no", "2",
]


@pytest.fixture(scope="session")
def tokenizers():
    from vlpet.tokenization import train_tokenizer

    return {fam: train_tokenizer(TEXTS * 10, fam, vocab_size=300) for fam in ("bart", "t5")}


@pytest.fixture(autouse=True)
def _quiet_random_weights():
    from features.weights import RandomWeightsWarning as ClipRandomWeightsWarning
    from vlpet.backbones import RandomWeightsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        warnings.simplefilter("ignore", ClipRandomWeightsWarning)
        yield


# open_clip's three architectures with one block per stage and the real widths: every output keeps the paper's
# shape ((49, 2048) RN101 grids, (49, 768) / (196, 768) ViT tokens, 512-d pooled) at a fraction of the build and
# forward cost. tests/features/test_clip_architectures.py builds the real ones (on the meta device).
_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}
TINY_CLIP_CONFIGS = {
    "RN101": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 64,
                                               "patch_size": None}, "text_cfg": _TINY_TEXT},
    "ViT-B-32": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 1, "width": 768, "patch_size": 32},
                 "text_cfg": _TINY_TEXT},
    "ViT-B-16": {"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 1, "width": 768, "patch_size": 16},
                 "text_cfg": _TINY_TEXT},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """The tiny configs registered through ``open_clip.add_model_config`` under the real names for one test
    module, the real ones registered back afterwards. Yields the config folder, for subprocesses to register
    too (``open_clip.add_model_config(folder)``)."""
    import open_clip

    real, tiny = tmp_path_factory.mktemp("clip-real"), tmp_path_factory.mktemp("clip-tiny")
    for name, cfg in TINY_CLIP_CONFIGS.items():
        (real / f"{name}.json").write_text(json.dumps(open_clip.get_model_config(name)))
        (tiny / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tiny)
    yield tiny
    open_clip.add_model_config(real)


@pytest.fixture(scope="module")
def tiny_clip_pythonpath(tiny_clip, tmp_path_factory) -> str:
    """A PYTHONPATH under which every Python process registers the tiny configs at start-up (a
    ``sitecustomize`` module), for the CLIP models that tests build in subprocesses (Dask workers, ``vlpet
    demo``, ``vlpet serve`` and the flow runs it starts)."""
    site = tmp_path_factory.mktemp("clip-site")
    (site / "sitecustomize.py").write_text(f"import open_clip\n\nopen_clip.add_model_config({str(tiny_clip)!r})\n")
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


# ------------------------------------------------------------------------------------------------- task tables

# task -> (dataset, train split) of the tables built once per session
TASK_TRAIN_SPLITS = {
    "vqa": ("vqa", "karpathy_train"), "gqa": ("gqa", "train"), "nlvr2": ("nlvr2", "train"),
    "coco": ("coco", "train"), "tvqa": ("tvqa", "train"), "how2qa": ("how2qa", "train_release"),
    "tvc": ("tvc", "train_release"), "yc2c": ("yc2c", "train_release"),
}
VIDEO_TASKS = {"tvqa", "how2qa", "tvc", "yc2c"}


@dataclass
class TaskTables:
    """Real unified tables from the synthetic generator (``root``), small fake feature stores written through
    the store's writer API (``base/stores/<dataset>``) and the train-split task table of every task (``paths``)."""

    base: Path
    root: Path
    paths: dict[str, Path] = field(default_factory=dict)
    image_f: int = 16
    video_f: int = 8
    splits: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(TASK_TRAIN_SPLITS))

    def features_for(self, media_id: str, video: bool):
        import numpy as np

        seed = int.from_bytes(hashlib.sha256(media_id.encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        if video:
            return rng.standard_normal((3 + seed % 90, self.video_f), dtype=np.float32).astype(np.float16)
        return rng.standard_normal((49, self.image_f), dtype=np.float32).astype(np.float16)

    def make_store(self, path: Path, media_table: Path, video: bool, absent: set[str] = frozenset(),
                   quarantined: set[str] = frozenset()) -> str:
        """A committed snapshot with fake features for every media of ``media_table`` except ``absent``."""
        from features.media import MediaItem
        from features.store import FeatureStore, StoreSpec
        from pipelines.tables import read_table

        spec = (StoreSpec(extractor="fake-video", shape=(None, self.video_f), dtype="float16", ragged=True)
                if video else StoreSpec(extractor="fake-grid", shape=(49, self.image_f), dtype="float16"))
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
                    w.add(it, self.features_for(it.media_id, video))
        return store.commit(run, items, {"weights": "sha256:fake", "random_init": False, "device": "cpu"}).id


def _prepare_tiny_data(base: Path) -> Path:
    from pipelines.fetch import fetch_dataset, write_sha256sums
    from pipelines.prepare import prepare_dataset
    from pipelines.sources import SOURCES
    from pipelines.synth import generate

    out, root = base / "mirror", base / "data"
    generate(out, "tiny", 0)
    for source in SOURCES:
        if (out / source).is_dir():
            write_sha256sums(out / source)
    datasets = sorted({d for d, _ in TASK_TRAIN_SPLITS.values()})
    for dataset in datasets:  # fetch all first: TVC's tables join TVQA's subtitle file
        fetch_dataset(dataset, root, mirror=out.resolve().as_uri(), progress=False, media_from=out / dataset)
    for dataset in datasets:
        prepare_dataset(dataset, root)
    return root


@pytest.fixture(scope="session")
def task_tables(tmp_path_factory) -> TaskTables:
    """One build per test session (the generator + 8 stores take a few seconds)."""
    from pipelines.tasks import build_task_table

    base = tmp_path_factory.mktemp("vlpet-tasks")
    tables = TaskTables(base=base, root=_prepare_tiny_data(base))
    for task, (dataset, split) in tables.splits.items():
        store = base / "stores" / dataset
        if not (store / "snapshots").is_dir():
            tables.make_store(store, tables.root / "tables" / dataset / "media.arrow", task in VIDEO_TASKS)
        tables.paths[task] = base / "tasks" / task / f"{split}.arrow"
        build_task_table(task, split, tables.root / "tables" / dataset / f"{split}.arrow", store, tables.paths[task])
    return tables


@pytest.fixture(scope="session")
def task_tokenizer():
    from vlpet.tokenization import train_tokenizer

    words = ("vqa gpa nlvr caption tvqa how2qa tvc yc2c [Subs] [Q] [TS] [Choices] a0 a1 a2 a3 a4 true false "
             "what how many color is the shapes circle square triangle red green blue orange purple")
    return train_tokenizer([words] * 4, "bart", vocab_size=400)


@pytest.fixture(scope="session")
def prefect_ephemeral(tmp_path_factory):
    """A private PREFECT_HOME and a temporary ephemeral API (fresh SQLite), analytics off; the variables are
    also in the environment so Dask worker processes see the same settings."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PREFECT_API_URL": "",
           "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        if v:
            mp.setenv(k, v)
        else:
            mp.delenv(k, raising=False)
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(home), PREFECT_SERVER_ANALYTICS_ENABLED: False,
                             PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 90}):
        with prefect_test_harness(server_startup_timeout=90):
            yield home
    mp.undo()
