"""Lineage records: record/get/find/tree round trip, inherited flags, concurrent appends, the CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.lineage import LineageRecord, LineageStore, artifact_id, find_root


def _chain(root: Path) -> tuple[LineageStore, dict[str, LineageRecord]]:
    """raw file -> table -> task table <- features; task table -> checkpoint -> metrics."""
    files = {}
    for name, text in (("raw.json", "raw"), ("train.arrow", "table"), ("task.arrow", "task"),
                       ("snap", None), ("ckpt.safetensors", "weights"), ("metrics.json", '{"acc": 0.5}')):
        p = root / name
        if text is None:
            p.mkdir()
            (p / "index.arrow").write_text("idx")
        else:
            p.write_text(text)
        files[name] = p
    store = LineageStore(root)
    recs = {}
    recs["raw"] = store.record("raw", files["raw.json"], params={"url": "file:///m/raw.json"},
                               flags={"synthetic_data": True}, stage="download")
    recs["table"] = store.record("table", files["train.arrow"], [recs["raw"]], {"split": "train"},
                                 counts={"rows": 3}, stage="prepare", code_version="c" * 64)
    recs["features"] = store.record("features", files["snap"], [], {"extractor": "clip-rn101-grid"},
                                    flags={"random_init_weights": True}, device="cpu", stage="extract-features")
    recs["task"] = store.record("task-table", files["task.arrow"], [recs["table"].id, recs["features"]],
                                {"task": "vqa"}, timings={"seconds": 0.123456})
    recs["ckpt"] = store.record("checkpoint", files["ckpt.safetensors"], [recs["task"]], {"method": "vl-pet"})
    recs["metrics"] = store.record("metrics", files["metrics.json"], [recs["ckpt"]], {"split": "test"},
                                   counts={"examples": 10})
    return store, recs


def test_record_get_find_tree_round_trip(tmp_path):
    store, recs = _chain(tmp_path)
    m = recs["metrics"]
    assert m.id.startswith("metrics:") and len(m.id) == len("metrics:") + 16
    assert m.id == artifact_id("metrics", store.hasher.file(tmp_path / "metrics.json"))
    assert store.get(m.id) == m
    assert store.get(m.id[:12]) == m  # a unique prefix
    assert store.find(tmp_path / "metrics.json") == m
    assert store.resolve(str(tmp_path / "metrics.json")) == m and store.resolve(m.id) == m
    # Flags flow downstream: the metrics were computed from synthetic data with random-init CLIP weights.
    assert m.flags == {"synthetic_data": True, "random_init_weights": True}
    assert recs["table"].flags == {"synthetic_data": True, "random_init_weights": False}
    assert {"torch", "pyarrow", "prefect", "python"} <= set(m.versions)
    assert recs["task"].timings == {"seconds": 0.1235} and recs["features"].device == "cpu"
    assert recs["task"].inputs == [{"id": recs["table"].id, "sha256": recs["table"].sha256,
                                    "path": recs["table"].path},
                                   {"id": recs["features"].id, "sha256": recs["features"].sha256,
                                    "path": recs["features"].path}]
    tree = store.tree(m.id)
    chain = [tree["kind"]]
    node = tree
    while node["inputs"]:
        node = node["inputs"][0]
        chain.append(node["kind"])
    assert chain == ["metrics", "checkpoint", "task-table", "table", "raw"]
    assert tree["inputs"][0]["inputs"][0]["inputs"][1]["kind"] == "features"
    assert json.loads(json.dumps(tree)) == tree
    # A re-record of changed content is a new id; find() returns the latest record for the path.
    (tmp_path / "metrics.json").write_text('{"acc": 0.6}')
    m2 = store.record("metrics", tmp_path / "metrics.json", [recs["ckpt"]])
    assert m2.id != m.id and store.find(tmp_path / "metrics.json").id == m2.id and store.get(m.id) == m
    # ensure() reuses a record whose content is unchanged
    assert store.ensure("metrics", tmp_path / "metrics.json").id == m2.id
    assert find_root(str(tmp_path / "metrics.json")) == tmp_path.resolve()


def test_bad_inputs_and_torn_lines(tmp_path):
    store, _ = _chain(tmp_path)
    with pytest.raises(KeyError, match="no such record"):
        store.record("metrics", tmp_path / "metrics.json", ["table:0000000000000000"])
    with pytest.raises(ValueError, match="lineage kind"):
        store.record("Bad Kind", tmp_path / "metrics.json")
    with pytest.raises(FileNotFoundError, match="nope"):
        store.record("metrics", tmp_path / "nope.json")
    with pytest.raises(KeyError, match="no lineage record"):
        store.tree("metrics:ffffffffffffffff")
    with open(store.path, "ab") as fh:  # a writer killed mid-line
        fh.write(b'{"id": "metrics:')
    assert len(list(store.records())) == 6


def _append_many(root: str, k: int) -> None:
    store = LineageStore(root)
    for i in range(20):
        p = Path(root) / f"f{k}-{i}.txt"
        p.write_text(f"{k} {i}" * 200)
        store.record("table", p, params={"k": k, "i": i, "pad": "x" * 5000})


def test_concurrent_appends_never_interleave(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    lines = (tmp_path / ".vlpet" / "lineage.jsonl").read_text().splitlines()
    assert len(lines) == 80 and all(json.loads(line)["kind"] == "table" for line in lines)


def _app() -> typer.Typer:
    from flows.ops_cli import register

    app = typer.Typer()
    register(app)
    return app


def test_lineage_cli_prints_the_tree_and_json(tmp_path):
    _, recs = _chain(tmp_path)
    runner = CliRunner()
    res = runner.invoke(_app(), ["lineage", str(tmp_path / "metrics.json")])
    assert res.exit_code == 0, res.output
    for r in recs.values():
        assert r.id in res.output
    assert "synthetic_data" in res.output and "random_init_weights" in res.output
    res = runner.invoke(_app(), ["lineage", recs["task"].id, "--root", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    tree = json.loads(res.output)
    assert tree["id"] == recs["task"].id and [c["kind"] for c in tree["inputs"]] == ["table", "features"]
    res = runner.invoke(_app(), ["lineage", "metrics:0123456789abcdef", "--root", str(tmp_path)])
    assert res.exit_code == 1 and "no lineage record" in res.output
