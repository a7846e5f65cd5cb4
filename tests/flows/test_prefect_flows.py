"""The Prefect flows in ephemeral mode (no server): caching through the flow, lineage published as Prefect
artifacts, and the Dask scale-out (a 2-worker LocalCluster) committing a snapshot bit-identical to a
single-process extraction."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXTRACTOR = "clip-vit-b32-grid"
# CLIP models of tiny depth and real shapes (conftest)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("tiny_clip")]


@pytest.fixture(scope="module")
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
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert f"lineage-features-{first['lineage'].split(':')[1]}" in keys
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
    from flows.prefect_flows import dask_task_runner

    with pytest.raises(ValueError, match="local:N"):
        dask_task_runner("local:0")
    with pytest.raises(ValueError, match="cluster='ssh://x'"):
        dask_task_runner("ssh://x")
