"""The Prefect flows in ephemeral mode (no server): caching through the flow, lineage published as Prefect
artifacts, and the Dask scale-out (a 2-worker LocalCluster) committing a snapshot bit-identical to a
single-process extraction."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.lineage import LineageStore

EXTRACTOR = "clip-vit-b32-grid"
# CLIP models of tiny depth and real shapes (conftest)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("tiny_clip")]


def _media(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (40 + 4 * k, 56, 3), dtype=np.uint8)).save(folder / f"m{k}.jpg")
    return folder


def test_extract_flow_caches_and_publishes_lineage(tmp_path, prefect_ephemeral):
    from prefect.client.orchestration import get_client

    from flows.prefect_flows import extract_features_flow

    media = _media(tmp_path / "media", 3)
    kw = {"media": str(media), "store": str(tmp_path / "store"), "extractor": EXTRACTOR, "device": "cpu",
          "workers": 0, "root": str(tmp_path), "weights": "random"}
    first = extract_features_flow(**kw)
    second = extract_features_flow(**kw)
    assert (first["cache_hit"], first["extracted"], first["items"]) == (False, 3, 3)
    assert second["cache_hit"] is True and second["snapshot"] == first["snapshot"]
    assert first["random_init"] is True
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:  # the session's API also holds other tests' runs: only ours
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["extract-features"])),
                                     sort=FlowRunSort.START_TIME_DESC, limit=50)
        ours = [r.id for r in runs if r.parameters.get("root") == str(tmp_path)]
        artifacts = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ours)))}
    assert len(ours) == 2
    # Few artifacts with stable keys (one history per flow and store): the run's summary and its lineage.
    assert {"extract-features-store-summary", "extract-features-store-lineage"} <= set(artifacts)
    assert first["lineage"] in artifacts["extract-features-store-lineage"].data
    assert (tmp_path / ".vlpet" / "lineage.jsonl").is_file()
    assert not (Path(os.environ["PREFECT_HOME"]) / "storage").exists()  # no results persisted under PREFECT_HOME


def test_dask_local_cluster_snapshot_equals_single_process(tmp_path, prefect_ephemeral, tiny_clip_pythonpath,
                                                          monkeypatch):
    monkeypatch.setenv("PYTHONPATH", tiny_clip_pythonpath)  # the Dask workers build the same tiny models
    from features.engine import extract
    from features.store import FeatureStore
    from flows.prefect_flows import extract_features_flow

    media = _media(tmp_path / "media", 6)
    single = extract(media, tmp_path / "single", extractor=EXTRACTOR, device="cpu", batch_size=2, workers=0,
                     progress=False, weights="random")
    out = extract_features_flow(media=str(media), store=str(tmp_path / "dask"), extractor=EXTRACTOR, device="cpu",
                                cluster="local:2", batch_size=2, root=str(tmp_path), weights="random")
    assert out["shards"] == 2 and out["extracted"] == 6 and out["cache_hit"] is False
    a = FeatureStore.open_reader(tmp_path / "single")
    b = FeatureStore.open_reader(tmp_path / "dask", snapshot=out["snapshot"])
    assert sorted(a.media_ids) == sorted(b.media_ids) == [f"m{k}" for k in range(6)]
    for mid in a.media_ids:
        x, y = a.get(mid), b.get(mid)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    assert out["content_digest"] == single.content_digest
    # Two shards wrote segments of their own; one commit published them.
    assert len(FeatureStore.open(tmp_path / "dask").snapshot(out["snapshot"]).segments) >= 2


def test_bad_cluster_is_a_clear_error(tmp_path, prefect_ephemeral):
    from flows.dask_shards import dask_task_runner

    with pytest.raises(ValueError, match="local:N"):
        dask_task_runner("local:0")
    with pytest.raises(ValueError, match="cluster='ssh://x'"):
        dask_task_runner("ssh://x")


def test_cli_run_and_flow_run_share_key_lineage_and_outputs(tmp_path, prefect_ephemeral):
    """`vlpet extract` records lineage (`vlpet lineage STORE` shows it); the same call through the
    extract-features flow is a cache hit on the same key, pointing at the same record and snapshot."""
    import json

    from typer.testing import CliRunner

    from flows.cli import app
    from flows.prefect_flows import extract_features_flow

    media = _media(tmp_path / "media", 3)
    store = tmp_path / "store"
    runner = CliRunner()
    res = runner.invoke(app, ["extract", "--media", str(media), "--store", str(store), "--extractor", EXTRACTOR,
                              "--device", "cpu", "--workers", "0", "--weights", "random"])
    assert res.exit_code == 0, res.output
    assert "3 extracted" in res.output and "stage computed" in res.output
    shown = runner.invoke(app, ["lineage", str(store), "--json"])
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.output)
    assert tree["kind"] == "features" and tree["stage"] == "extract" and tree["counts"]["extracted"] == 3
    assert [c["kind"] for c in tree["inputs"]] == ["media-dir"] and tree["inputs"][0]["path"] == str(media)
    (cli_entry,) = (tmp_path / ".vlpet" / "cache" / "extract").glob("*.json")  # data root: the store's parent

    flow = extract_features_flow(media=str(media), store=str(store), extractor=EXTRACTOR, device="cpu", workers=0,
                                 weights="random")
    assert flow["cache_hit"] is True and flow["extracted"] == 3
    assert flow["cache_key"] == cli_entry.stem and flow["lineage"] == tree["id"]
    assert flow["snapshot"] == tree["extra"]["snapshot"] and flow["outputs"] == json.loads(
        cli_entry.read_text())["result"]["outputs"]
    assert list((tmp_path / ".vlpet" / "cache" / "extract").glob("*.json")) == [cli_entry]  # one key, not two
    records = [r for r in LineageStore(tmp_path).records() if r.kind == "features"]
    assert [r.id for r in records] == [tree["id"]]  # the hit wrote no second record
