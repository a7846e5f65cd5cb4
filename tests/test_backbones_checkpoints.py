"""Backbone resolution (local dir, local HF cache, random only by name) and checkpoint safety/errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BartForConditionalGeneration

from tests.hub_server import use_hub
from vlpet import (
    CheckpointMismatchError,
    build_model,
    load_model,
    load_trainable,
    method_config,
    save_checkpoint,
)
from vlpet.backbones import RandomWeightsWarning, architecture_config, load_backbone
from vlpet.checkpoint import FROZEN_NAME, TRAINABLE_NAME
from vlpet.hub import WeightsUnavailableError
from vlpet.tokenization import vis_extra_id

FEAT = 32


def _save_plain_bart(directory: Path, vocab_without_vl: int) -> None:
    """A stand-in 'pretrained' checkpoint: a plain HF BART whose vocab lacks the VL special tokens."""
    torch.manual_seed(3)
    cfg = architecture_config("tiny-bart", vocab_size=vocab_without_vl)
    BartForConditionalGeneration(cfg).save_pretrained(directory)


def test_random_weights_only_by_name_warn_loudly_and_are_recorded(monkeypatch, tmp_path):
    with pytest.warns(RandomWeightsWarning, match="RANDOM WEIGHTS"):
        _, info = load_backbone("bart-base", weights="random", d_model=64, encoder_layers=1, decoder_layers=1,
                                encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                                decoder_attention_heads=2)
    assert info.pretrained is False and info.source == "random:bart-base"
    assert "RANDOM" in info.as_dict()["origin"]
    use_hub(monkeypatch, None, tmp_path / "hf")  # offline, empty cache: official weights are an error, not random
    with pytest.raises(WeightsUnavailableError, match=r"facebook/bart-base \(file config.json\)"):
        load_backbone("bart-base")


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backbone 'gpt2'"):
        build_model("gpt2", "vl-pet-large")
    with pytest.raises(ValueError, match=r"unknown method .vl-pet-huge.*vl-pet-large"):
        method_config("vl-pet-huge")
    with pytest.raises(ValueError, match="unknown method"):
        build_model("tiny-bart", "nope")


def test_local_directory_backbone_adds_vl_tokens_and_saves_added_rows(tmp_path):
    # A stand-in pretrained checkpoint whose embedding matrix lacks the 200 VL-token rows, next to a
    # tokenizer that has them: build_model must resize to len(tokenizer) and initialise the new rows.
    from vlpet.tokenization import train_tokenizer

    plain = train_tokenizer(["vqa: what color", "red", "blue"] * 5, "bart", vocab_size=300)
    n_vl = 200
    base_tok_dir = tmp_path / "bb"
    _save_plain_bart(base_tok_dir, len(plain) - n_vl)
    plain.save_pretrained(base_tok_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)  # a local dir must never fall back to random
        model, tok2 = build_model(str(base_tok_dir), "vl-pet-large", feat_dim=FEAT, seed=0)
    assert model.info.pretrained and model.info.source == str(base_tok_dir.resolve())
    assert len(tok2) == model.backbone.get_input_embeddings().num_embeddings
    assert tok2.convert_tokens_to_ids("<vis_extra_id_0>") == vis_extra_id(len(tok2), 0)
    assert tok2.convert_tokens_to_ids("<vis_extra_id_35>") == vis_extra_id(len(tok2), 35)
    assert model.base_vocab_size == len(plain) - n_vl  # rows beyond it were added at resize
    # Added rows are random (BART: N(0, 0.02^2)), frozen, and stored in the checkpoint.
    rows = model.backbone.get_input_embeddings().weight[model.base_vocab_size:]
    assert 0.01 < rows.std().item() < 0.03
    save_checkpoint(model, tmp_path / "ck")
    frozen = load_file(tmp_path / "ck" / FROZEN_NAME)
    assert list(frozen) == ["added_vocab_rows"] and torch.equal(frozen["added_vocab_rows"], rows.detach())
    # Loading onto a fresh backbone (new random rows) reproduces outputs exactly.
    fresh, _ = build_model(str(base_tok_dir), "vl-pet-large", feat_dim=FEAT, seed=123)
    load_trainable(fresh, tmp_path / "ck")
    ids = tok2(["vqa: what color"], return_tensors="pt").input_ids
    feats = torch.randn(1, 49, FEAT)
    model.eval(), fresh.eval()
    with torch.no_grad():
        a = model(ids, feats, decoder_input_ids=torch.tensor([[2, 0]]))["logits"]
        b = fresh(ids, feats, decoder_input_ids=torch.tensor([[2, 0]]))["logits"]
    assert torch.equal(a, b)


def test_hf_cache_resolution_in_subprocess(tmp_path, tokenizers):
    """The real offline hub-cache path: a snapshot of 'facebook/bart-base' in HF_HUB_CACHE is found."""
    cache = tmp_path / "hub"
    snap = cache / "models--facebook--bart-base" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (cache / "models--facebook--bart-base" / "refs").mkdir()
    (cache / "models--facebook--bart-base" / "refs" / "main").write_text("0" * 40)
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(snap)
    tokenizers["bart"].save_pretrained(snap)  # tokenizer.json, as the hub repo has
    code = textwrap.dedent("""
        import json, warnings
        from vlpet.backbones import load_backbone, RandomWeightsWarning
        warnings.simplefilter("error", RandomWeightsWarning)
        model, info = load_backbone("bart-base")
        print(json.dumps(info.as_dict()))
    """)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["pretrained"] is True and info["source"] == "hf:facebook/bart-base@" + "0" * 40
    assert info["sha256"] == hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()


def test_checkpoint_for_other_method_or_backbone_is_refused(tokenizers, tmp_path):
    model, _ = build_model("tiny-bart", "vl-pet-large", feat_dim=FEAT, tokenizer=tokenizers["bart"], seed=0)
    save_checkpoint(model, tmp_path / "ck")
    other_method, _ = build_model("tiny-bart", "lora", feat_dim=FEAT, tokenizer=tokenizers["bart"], seed=0)
    with pytest.raises(CheckpointMismatchError, match=r"made for method vl-pet.*model uses lora"):
        load_trainable(other_method, tmp_path / "ck")
    other_gran, _ = build_model("tiny-bart", "vl-pet-small", feat_dim=FEAT, tokenizer=tokenizers["bart"], seed=0)
    with pytest.raises(CheckpointMismatchError, match="granularity"):
        load_trainable(other_gran, tmp_path / "ck")
    other_backbone, _ = build_model("tiny-t5", "vl-pet-large", feat_dim=FEAT, tokenizer=tokenizers["t5"], seed=0)
    with pytest.raises(CheckpointMismatchError, match="backbone tiny-bart"):
        load_trainable(other_backbone, tmp_path / "ck")
    other_feat, _ = build_model("tiny-bart", "vl-pet-large", feat_dim=FEAT * 2, tokenizer=tokenizers["bart"], seed=0)
    with pytest.raises(CheckpointMismatchError, match="dimension 32"):
        load_trainable(other_feat, tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="not a vlpet checkpoint"):
        load_model(tmp_path)


def test_checkpoint_is_safetensors_and_json_only(tokenizers, tmp_path):
    model, _ = build_model("tiny-bart", "vl-pet-middlex", feat_dim=FEAT, tokenizer=tokenizers["bart"], seed=0)
    target = save_checkpoint(model, tmp_path / "ck", tokenizer=tokenizers["bart"])
    cfg = json.loads((target / "vlpet_config.json").read_text())
    assert cfg["method"]["granularity"] == "middlex" and cfg["backbone"]["pretrained"] is False
    assert set(load_file(target / TRAINABLE_NAME)) == set(cfg["trainable_keys"])
    assert not list(target.glob("*.bin")) and not list(target.glob("*.pt"))
    # Saving again replaces the checkpoint whole and leaves no temporary directories behind.
    save_checkpoint(model, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_denoising_pretrain_makes_a_labelled_local_backbone(tokenizers, tmp_path):
    from vlpet.pretrain import PRETRAINING_RECORD, denoising_pretrain

    record = denoising_pretrain("tiny-bart", tokenizers["bart"], ["red", "blue", "vqa: what color"],
                                tmp_path / "bb", steps=30, batch_size=8)
    assert record["loss_last"] < record["loss_first"]
    assert (tmp_path / "bb" / PRETRAINING_RECORD).is_file()
    model, tok = build_model(str(tmp_path / "bb"), "vl-pet-large", feat_dim=FEAT)
    assert model.info.pretrained and "denoising pre-trained by vlpet" in model.info.origin
    assert len(tok) == len(tokenizers["bart"])


@pytest.mark.parametrize("name", ["tiny-bart", "tiny-t5"])
def test_dropout_override_switches_off_every_dropout_random_and_from_disk(name, tmp_path):
    """``dropout=0`` must reach the layers (HF copies the config value into each layer at build time), for a
    random backbone and for one loaded from a directory, while ``None`` keeps the architecture's 0.1."""
    torch.manual_seed(0)
    keep, _ = load_backbone(name)
    off, _ = load_backbone(name, dropout=0.0)
    keep.save_pretrained(tmp_path)
    from_disk, _ = load_backbone(str(tmp_path), dropout=0.0)
    ids = torch.randint(5, 100, (2, 12))
    dec = torch.randint(5, 100, (2, 5))

    def twice(model):
        model.train()
        return [model(input_ids=ids, decoder_input_ids=dec).logits for _ in range(2)]

    a, b = twice(keep)
    assert not torch.equal(a, b)  # the default 0.1 dropout is live in train mode
    for model in (off, from_disk):
        a, b = twice(model)
        assert torch.equal(a, b)
    fields = ("dropout", "attention_dropout", "activation_dropout") if name == "tiny-bart" else ("dropout_rate",)
    assert all(getattr(keep.config, f) == 0.1 for f in fields)
    assert all(getattr(m.config, f) == 0.0 for m in (off, from_disk) for f in fields)
    with pytest.raises(ValueError, match="dropout must be in"):
        load_backbone(name, dropout=1.0)
