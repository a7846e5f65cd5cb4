"""The demo runs every stage that is wired, learns something real, and says what it did not run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app


@pytest.mark.slow
def test_demo_runs_wired_stages_and_reports_honestly(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--scale", "tiny"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["synthetic_data"] is True and "Not wired yet" in " ".join(result.output.split())
    assert set(report["datasets"]) == {"coco", "vqa", "gqa", "nlvr2", "tvqa", "how2qa", "tvc", "yc2c"}
    for name, d in report["datasets"].items():
        assert d["media_coverage"] == 1.0 and sum(d["tables"].values()) > 0, name
    stores = report["feature_stores"]
    assert stores["images"]["extracted"] == stores["images"]["media"] > 0  # every image of every dataset
    assert stores["videos"]["extracted"] == stores["videos"]["media"] > 0
    assert stores["images"]["random_init_weights"] is True  # no CLIP weights on this machine, and it says so
    tasks = report["task_tables"]
    assert set(tasks) == {"vqa", "gqa", "nlvr2", "coco", "tvqa", "how2qa", "tvc", "yc2c"}
    for task, splits in tasks.items():
        assert all(v["excluded"] == 0 for v in splits.values()), task  # every media has features
        assert sum(v["rows"] for v in splits.values()) > 0, task
    model = report["model"]
    assert "no public weights" in model["what_ran"]
    assert model["backbone"]["origin"].startswith("random init of tiny-bart, denoising pre-trained by vlpet")
    assert model["loss_last"] < model["loss_first"]
    assert model["heldout_accuracy"] > model["majority_baseline"]
    assert model["reload_reproduces_generations"] is True
    assert "report.json" in result.output
