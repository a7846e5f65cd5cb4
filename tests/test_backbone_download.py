"""``vlpet train --backbone bart-base`` takes the public checkpoint from the (loopback) Hugging Face hub: a tiny
BART, its config and tokenizer served under the real repo name ``facebook/bart-base``; HF_HOME empty."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.runs import load_train_config
from tests.hub_server import COMMIT, HubServer, use_hub
from tests.test_runs import _overrides, tasks_dir  # noqa: F401  (tasks_dir is a fixture)

REPO = "facebook/bart-base"


@pytest.fixture(scope="module")
def bart_repo(tokenizers, tmp_path_factory) -> dict[str, bytes]:
    """The files of a tiny 'facebook/bart-base': config.json, model.safetensors, tokenizer files."""
    import torch
    from transformers import BartForConditionalGeneration

    from vlpet.backbones import architecture_config

    folder = tmp_path_factory.mktemp("bart-repo")
    torch.manual_seed(5)
    tok = tokenizers["bart"]
    BartForConditionalGeneration(architecture_config("tiny-bart", vocab_size=len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _config_file(tmp_path):
    cfg = load_train_config("synthetic-image", overrides=_overrides(backbone="bart-base", pretrain=None, max_steps=2,
                                                                    save_every_steps=2))
    path = tmp_path / "cfg.json"
    path.write_text(cfg.model_dump_json())
    return path


def _train(tasks, out, config, *extra):
    return CliRunner().invoke(app, ["train", "--data", str(tasks), "--out", str(out), "--config", str(config),
                                    "--device", "cpu", "--no-evaluate", "--no-progress", *extra])


def test_train_bart_base_downloads_the_public_checkpoint(tmp_path, monkeypatch, bart_repo, tasks_dir):  # noqa: F811
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(bart_repo)
    with HubServer() as hub:
        hub.add_repo(REPO, bart_repo)
        use_hub(monkeypatch, hub, tmp_path / "hf")
        res = _train(tasks_dir, tmp_path / "run", _config_file(tmp_path))
        assert res.exit_code == 0, res.output
        assert hub.requests_for(REPO, "model.safetensors") >= 2 and hub.requests_for(REPO, "tokenizer.json") >= 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    bb = saved["backbone"]
    assert bb["pretrained"] is True and saved["random_init_backbone"] is False
    assert bb["source"] == f"hf:{REPO}@{COMMIT}"
    assert bb["sha256"] == hashlib.sha256(bart_repo["model.safetensors"]).hexdigest()
    assert saved["train"]["weights"] == "official"
    # the backbone's own tokenizer (from the served tokenizer.json), with the VL tokens, was saved with the run
    tok = json.loads((tmp_path / "run" / "model" / "tokenizer" / "tokenizer.json").read_text())
    assert "<vis_extra_id_0>" in {t["content"] for t in tok["added_tokens"]}


def test_train_offline_without_the_checkpoint_fails_before_writing(tmp_path, monkeypatch, tasks_dir):  # noqa: F811
    cache = use_hub(monkeypatch, None, tmp_path / "empty-hf")
    res = _train(tasks_dir, tmp_path / "run", _config_file(tmp_path))
    assert res.exit_code == 2
    assert f"{REPO} (file config.json)" in res.output and str(cache) in res.output
    assert "vlpet weights fetch bart-base" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "run").exists()
