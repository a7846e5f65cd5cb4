"""The interim demo trains something real and says what it ran."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app


@pytest.mark.slow
def test_demo_learns_beyond_majority_and_reports_honestly(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert "does NOT download" in " ".join(result.output.split())
    assert "no public weights" in report["what_ran"]
    assert report["backbone"]["origin"].startswith("random init of tiny-bart, denoising pre-trained by vlpet")
    assert report["loss_last"] < report["loss_first"]
    assert report["heldout_accuracy"] > report["majority_baseline"]
    assert report["reload_reproduces_generations"] is True
    assert "report.json" in result.output and "checkpoint" in result.output
