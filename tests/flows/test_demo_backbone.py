"""``vlpet demo --backbone``: a pretrained BART/T5 replaces the denoised tiny-bart in both presets, and a name
without weights on disk is refused before anything is written (a random bart-base would only be slower)."""

from __future__ import annotations

from transformers import BartForConditionalGeneration
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import PRESETS, TINY_OVERRIDES, demo_overrides
from flows.lineage import LineageStore
from flows.runs import load_train_config
from flows.stages.train import backbone_inputs, train_input_records
from vlpet.backbones import architecture_config


def test_default_overrides_are_the_scale_defaults_or_the_callers():
    assert demo_overrides("demo") == {}
    assert demo_overrides("tiny") == TINY_OVERRIDES
    assert demo_overrides("tiny", train_overrides={"epochs": 2}) == {"epochs": 2}


def test_local_pretrained_directory_replaces_tiny_bart_without_pretraining(tmp_path):
    snap = tmp_path / "my-bart"
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(snap)
    over = demo_overrides("tiny", backbone=str(snap))
    assert over["backbone"] == str(snap.resolve()) and over["pretrain"] is None
    assert over["max_steps"] == TINY_OVERRIDES["max_steps"]  # the scale's other settings stay
    assert TINY_OVERRIDES["pretrain"] is not None  # the module default is not mutated
    for preset_name in PRESETS.values():
        cfg = load_train_config(preset_name, overrides=over)
        assert cfg.backbone == str(snap.resolve()) and cfg.pretrain is None


def test_relative_directory_is_recorded_absolute(tmp_path, monkeypatch):
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(tmp_path / "bb")
    monkeypatch.chdir(tmp_path)
    assert demo_overrides("demo", backbone="bb")["backbone"] == str((tmp_path / "bb").resolve())


def test_backbone_without_weights_is_refused_before_any_work(tmp_path):
    # tiny-bart is an architecture with no public checkpoint: never "pretrained" on any machine.
    try:
        demo_overrides("demo", backbone="tiny-bart")
    except ValueError as e:
        assert "--backbone 'tiny-bart'" in str(e) and "no pretrained weights" in str(e)
    else:
        raise AssertionError("a backbone without weights on disk was accepted")
    work = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(work), "--backbone", "tiny-bart"])
    assert result.exit_code == 2, result.output
    assert "no pretrained weights" in result.output
    assert not work.exists()  # nothing written: no Prefect home, no data


def test_train_cache_key_covers_a_local_backbones_files(tmp_path):
    snap = tmp_path / "bb"
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(snap)
    (snap / "tok").mkdir()
    (snap / "tok" / "vocab.json").write_text("{}")
    files = backbone_inputs(str(snap))
    assert set(files) == {"backbone/config.json", "backbone/generation_config.json", "backbone/model.safetensors",
                          "backbone/tok/vocab.json"}
    assert all(p.is_file() for p in files.values())
    assert backbone_inputs("bart-base") == {} and backbone_inputs("tiny-bart") == {}  # names, not directories


def test_checkpoint_lineage_names_a_local_backbone_by_content(tmp_path):
    snap = tmp_path / "bb"
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(snap)
    lineage = LineageStore(tmp_path / "root")
    assert train_input_records(lineage, {}, "tiny-bart") == []
    (rec,) = train_input_records(lineage, {}, str(snap))
    assert rec.kind == "backbone" and rec.path == str(snap.resolve())
    assert rec.sha256 == lineage.hasher.tree(snap)
    assert train_input_records(lineage, {}, str(snap))[0].id == rec.id  # unchanged weights: the same record
    (snap / "config.json").write_text((snap / "config.json").read_text() + " ")
    assert train_input_records(lineage, {}, str(snap))[0].id != rec.id  # new content: a new record


def test_a_vlpet_denoised_directory_is_still_random_init_in_lineage(tmp_path):
    from vlpet.pretrain import PRETRAINING_RECORD, pretraining_record

    snap = tmp_path / "denoised"
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(snap)
    lineage = LineageStore(tmp_path / "root")
    assert pretraining_record(snap) is None
    assert train_input_records(lineage, {}, str(snap))[0].flags["random_init_weights"] is False
    (snap / PRETRAINING_RECORD).write_text('{"origin": "random init of tiny-bart, denoising pre-trained by vlpet"}')
    assert pretraining_record(snap)["origin"].startswith("random init")
    assert train_input_records(lineage, {}, str(snap))[0].flags["random_init_weights"] is True


def test_official_demo_offline_without_weights_stops_before_writing(tmp_path, monkeypatch):
    """`vlpet demo` defaults to official weights (bart-base and OpenAI's CLIP): offline with an empty cache it
    names what is missing and how to get it, and writes nothing."""
    from tests.hub_server import use_hub

    cache = use_hub(monkeypatch, None, tmp_path / "empty-hf")
    work = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(work)])
    assert result.exit_code == 2
    assert "facebook/bart-base (file config.json)" in result.output and str(cache) in result.output
    assert "vlpet weights fetch bart-base" in result.output and "Traceback" not in result.output
    assert not work.exists()
    # with a local backbone, the missing CLIP weights are named the same way
    BartForConditionalGeneration(architecture_config("tiny-bart")).save_pretrained(tmp_path / "bb")
    clip = CliRunner().invoke(app, ["demo", "--workdir", str(work), "--backbone", str(tmp_path / "bb")])
    assert clip.exit_code == 2 and "timm/resnet101_clip.openai (file open_clip_model.safetensors)" in clip.output
    assert not work.exists()
