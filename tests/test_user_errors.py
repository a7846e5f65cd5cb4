"""Bad input through the ``vlpet`` command line (issue 16): each case exits with a usage/input error code, says
what is wrong naming the file, field and value, shows no traceback, and writes nothing."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from features.media import hash_file
from flows.cli import app
from pipelines.tasks import build_task_table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(path)
    return path


def _index(path: Path, rows: list[dict]) -> Path:
    table = pa.table({k: [r[k] for r in rows] for k in ("media_id", "rel_path", "sha256", "kind", "size")})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return path


def config_list(t: Path) -> list[str]:
    (t / "cfg.json").write_text('[{"epochs": 1}]')
    return ["train", "--data", str(t / "tasks"), "--out", str(t / "out"), "--config", str(t / "cfg.json")]


def config_bad_field(t: Path) -> list[str]:
    (t / "cfg.json").write_text(json.dumps({"name": "x", "tasks": ["vqa"], "epochs": "many"}))
    return ["train", "--data", str(t / "tasks"), "--out", str(t / "out"), "--config", str(t / "cfg.json")]


def config_bad_backbone(t: Path) -> list[str]:
    (t / "cfg.json").write_text(json.dumps({"name": "x", "tasks": ["vqa"], "backbone": "bert-huge"}))
    return ["train", "--data", str(t / "tasks"), "--out", str(t / "out"), "--config", str(t / "cfg.json")]


def preset_bad_backbone(t: Path) -> list[str]:
    return ["train", "--data", str(t / "tasks"), "--out", str(t / "out"), "--preset", "synthetic-image",
            "--set", "backbone=bert-huge"]


def index_escaping_root(t: Path) -> list[str]:
    _image(t / "outside.jpg")
    inside = _image(t / "media" / "in.jpg")
    rows = [{"media_id": "in", "rel_path": "in.jpg", "sha256": hash_file(inside), "kind": "image",
             "size": inside.stat().st_size},
            {"media_id": "x", "rel_path": f"{os.pardir}/outside.jpg", "sha256": "0" * 64, "kind": "image", "size": 1}]
    return ["extract", "--media", str(_index(t / "index.arrow", rows)), "--media-root", str(t / "media"),
            "--store", str(t / "out"), "--extractor", "clip-vit-b32-grid", "--device", "cpu", "--workers", "0",
            "--weights", "random"]


def pretrained_garbage(t: Path) -> list[str]:
    _image(t / "media" / "a.jpg")
    (t / "weights.pt").write_bytes(b"these are not weights")
    return ["extract", "--media", str(t / "media"), "--store", str(t / "out"), "--extractor", "clip-vit-b32-grid",
            "--device", "cpu", "--workers", "0", "--pretrained", str(t / "weights.pt")]


def pretrained_missing(t: Path) -> list[str]:
    _image(t / "media" / "a.jpg")
    return ["extract", "--media", str(t / "media"), "--store", str(t / "out"), "--extractor", "clip-vit-b32-grid",
            "--device", "cpu", "--workers", "0", "--pretrained", str(t / "nowhere" / "weights.pt")]


def store_errors_not_a_store(t: Path) -> list[str]:
    (t / "out").mkdir()
    return ["store", "errors", str(t / "out"), "--json"]


# (case, expected exit code, words the message must contain (the file, field, value), paths that must not exist)
CASES: list[tuple[Callable[[Path], list[str]], int, list[str], list[str]]] = [
    (config_list, 2, ["cfg.json", "JSON object", "list"], ["out"]),
    (config_bad_field, 2, ["cfg.json", "'epochs'", "'many'"], ["out"]),
    (config_bad_backbone, 2, ["cfg.json", "backbone", "'bert-huge'"], ["out"]),
    (preset_bad_backbone, 2, ["backbone", "'bert-huge'"], ["out"]),
    (index_escaping_root, 2, ["index.arrow row 1", f"'{os.pardir}/outside.jpg'", "media root"], ["out"]),
    (pretrained_garbage, 2, ["--pretrained", "weights.pt"], ["out"]),
    (pretrained_missing, 2, ["weights.pt", "does not exist"], ["out"]),
    (store_errors_not_a_store, 2, ["is not a feature store"], ["out/STORE.json"]),
]


@pytest.mark.parametrize("make, code, words, absent", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_is_one_clear_message_and_writes_nothing(tmp_path, make, code, words, absent):
    args = make(tmp_path)
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())  # rich wraps long messages in a box
    text = text.replace("│", "").replace("  ", " ")
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (AttributeError, TypeError, KeyError))
    for w in words:
        assert w in text.replace(" ", "") or w in text, (w, res.output)
    for p in absent:
        assert not (tmp_path / p).exists(), p


def test_debug_shows_the_traceback(tmp_path):
    args = config_list(tmp_path)
    res = CliRunner().invoke(app, ["--debug", *args])
    os.environ.pop("VLPET_DEBUG", None)
    assert res.exit_code == 2  # config errors are usage errors either way; --debug is for the others
    res = CliRunner().invoke(app, ["--debug", *pretrained_missing(tmp_path)])
    os.environ.pop("VLPET_DEBUG", None)
    assert isinstance(res.exception, FileNotFoundError)  # raised, not reduced to one line


def test_training_on_a_corrupt_store_stops_before_writing_naming_the_segment(tmp_path, task_tables):
    root = task_tables.root
    store, tasks = tmp_path / "store", tmp_path / "tasks"
    task_tables.make_store(store, root / "tables" / "vqa" / "media.arrow", False)
    for split in ("karpathy_train", "karpathy_val", "karpathy_test"):
        build_task_table("vqa", split, root / "tables" / "vqa" / f"{split}.arrow", store,
                         tasks / "vqa" / f"{split}.arrow")
    seg = sorted((store / "segments").glob("*.arrow"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 3] ^= 0x10
    seg.chmod(0o644)
    seg.write_bytes(bytes(data))
    from features.store import CorruptionError

    with pytest.raises(CorruptionError, match=seg.name):  # a task-table build refuses it too
        build_task_table("vqa", "karpathy_train", root / "tables" / "vqa" / "karpathy_train.arrow", store,
                         tmp_path / "again.arrow")
    assert not (tmp_path / "again.arrow").exists()
    res = CliRunner().invoke(app, ["train", "--data", str(tasks), "--out", str(tmp_path / "run"), "--preset",
                                   "synthetic-image", "--set", 'tasks=["vqa"]', "--set",
                                   f"feat_dim={task_tables.image_f}", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert seg.name in res.output and "vlpet store verify" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()
    shutil.rmtree(tmp_path / "store")
