"""vlpet.evaluation.report: loss-curve PNG, Markdown report, atomic writes."""

from __future__ import annotations

import json

import pytest

from vlpet.evaluation import loss_curve_png, markdown_report, write_text_atomic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_loss_curve_png(tmp_path):
    out = tmp_path / "plots" / "loss.png"
    got = loss_curve_png({"vqa": [(1, 2.0), (3, 1.5)], "gqa": [(2, 2.5), (4, 1.0)]}, out)
    assert got == out and out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # no temp file left behind
    # overwrite in place, including an explicit "all" series and an empty task
    loss_curve_png({"all": [(1, 3.0)], "vqa": [(1, 3.0)], "coco": []}, out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_loss_curve_png_empty_and_bad(tmp_path):
    loss_curve_png({}, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match=r"'vqa'.*step 2"):
        loss_curve_png({"vqa": [(1, 1.0), (2, float("nan"))]}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_markdown_report():
    metrics = {
        "vqa": {"task": "vqa", "metric": "vqa_accuracy", "score": 0.6, "n": 2, "unlabelled": 0,
                "vqa_scoring": "official"},
        "coco": {"task": "coco", "metric": "CIDEr", "score": 1.25, "n": 3, "unlabelled": 0, "Bleu_4": 0.5,
                 "ROUGE_L": 0.75},
        "nlvr2": {"task": "nlvr2", "metric": "accuracy", "score": None, "n": 0, "unlabelled": 4,
                  "reason": "no labelled examples among 4"},
    }
    baselines = {"vqa": {"score": 0.5, "prediction": "yes"}}
    config = {"method": "vl-pet-small", "lr": 0.001, "tasks": ["vqa", "coco", "nlvr2"]}
    notes = ["backbone has random weights", "features are synthetic"]
    md = markdown_report("Run 1", config, metrics, baselines, notes, "loss.png")
    lines = md.splitlines()
    assert lines[0] == "# Run 1"
    assert "| task | metric | score | majority baseline | n |" in lines
    assert '| vqa | vqa_accuracy | 0.6000 | 0.5000 ("yes") | 2 |' in lines
    assert "| coco | CIDEr | 1.2500 | – | 3 |" in lines
    assert "| nlvr2 | accuracy | – | – | 0 |" in lines
    assert "- backbone has random weights" in lines and "- features are synthetic" in lines
    assert "![training loss](loss.png)" in lines
    assert any("Bleu_4=0.5000" in line and "ROUGE_L=0.7500" in line for line in lines)
    block = md.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == config


def test_markdown_report_without_optional_parts():
    md = markdown_report("T", {}, {"gqa": {"metric": "accuracy", "score": 0.25, "n": 4}}, None, [], None)
    assert "| gqa | accuracy | 0.2500 | – | 4 |" in md.splitlines()
    assert "## Notes" not in md and "![" not in md


def test_write_text_atomic(tmp_path):
    path = tmp_path / "sub" / "report.md"
    write_text_atomic(path, "first ×")
    write_text_atomic(path, "second")
    assert path.read_text(encoding="utf-8") == "second"
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]
