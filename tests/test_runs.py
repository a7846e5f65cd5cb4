"""``vlpet train`` / ``vlpet evaluate`` on real task tables (tiny synthetic data, fake features)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.runs import load_train_config, train_run
from pipelines.tasks import ConcatTaskDataset, build_task_table
from vlpet.train import TEST_SPLITS, TRAIN_SPLITS, VAL_SPLITS

TASKS = ["vqa", "gqa", "nlvr2"]


IMAGE_F = 16  # conftest's task_tables.image_f


@pytest.fixture(scope="module")
def tasks_dir(task_tables) -> Path:
    base, root = task_tables.base, task_tables.root
    assert task_tables.image_f == IMAGE_F
    out = base / "all-splits"
    for task in TASKS:
        store = base / "stores" / task
        if not (store / "snapshots").is_dir():
            task_tables.make_store(store, root / "tables" / task / "media.arrow", False)
        for split in {*TRAIN_SPLITS[task], VAL_SPLITS[task], TEST_SPLITS[task]}:
            build_task_table(task, split, root / "tables" / task / f"{split}.arrow", store,
                             out / task / f"{split}.arrow")
    return out


def _overrides(**kw) -> dict:
    return {"tasks": TASKS, "feat_dim": IMAGE_F, "epochs": 1, "batch_size": 12, "max_steps": 6,
            "pretrain": {"steps": 3, "batch_size": 4, "tokenizer_vocab_size": 400}, "eval_batch_size": 16,
            "save_every_steps": 3, **kw}


def test_train_then_evaluate_writes_a_complete_run(tasks_dir, tmp_path):
    from vlpet.train.config import TrainConfig

    cfg = load_train_config("synthetic-image", overrides=_overrides())
    run = tmp_path / "run"
    result = train_run(cfg, tasks_dir, run, device="cpu", progress=False, data_notes=["synthetic test data"])
    assert result["train"]["steps"] == 6 and not result["skipped"]
    saved = json.loads((run / "config.json").read_text())
    assert TrainConfig.model_validate(saved["train"]) == cfg  # every hyper-parameter visible and exact
    assert saved["train"]["adam_eps"] == 1e-6 and saved["train"]["clip_grad_norm"] == 5.0
    assert saved["backbone_pretraining"]["steps"] == 3 and saved["random_init_backbone"] is True
    assert saved["backbone_pretraining"]["max_length"] == 64  # image inputs are at most 40 tokens
    assert saved["train_tables"]["gqa"][1]["split"] == "valid"  # GQA trains on train + valid
    assert all(n.endswith("bias") for n in saved["no_weight_decay_params"])

    runner = CliRunner()
    from flows.cli import app

    res = runner.invoke(app, ["evaluate", str(run), "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["tasks"]) == set(TASKS)
    for task, m in metrics["tasks"].items():
        assert m["split"] == TEST_SPLITS[task]
        assert 0.0 <= m["score"] <= 1.0
        assert "prediction" in m["majority_baseline"]
        preds = json.loads((run / "predictions" / f"{task}.{m['split']}.json").read_text())
        assert len(preds) == m["n"] + m.get("unlabelled", 0)
    assert metrics["tasks"]["vqa"]["vqa_scoring"] == "official"  # the 10 raw answers reach the metric
    report = (run / "report.md").read_text()
    assert "denoising" in report and "synthetic test data" in report and "loss.png" in report
    assert "Evaluated model: the last one (step 6" in report
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = train_run(cfg, tasks_dir, run, device="cpu", progress=False)
    assert again["skipped"] is True  # a finished run is not recomputed
    with pytest.raises(ValueError, match="another training config"):
        train_run(load_train_config("synthetic-image", overrides=_overrides(lr=2e-2)), tasks_dir, run,
                  device="cpu", progress=False)


def test_changed_tables_never_reuse_a_finished_run(tasks_dir, tmp_path):
    """Same config, other data: an error by default; with replace the old run is moved aside and retrained."""
    import shutil

    from pipelines.tasks import open_task_table
    from pipelines.tasks.build import write_stream_atomic

    data = tmp_path / "tasks"
    shutil.copytree(tasks_dir, data)
    cfg = load_train_config("synthetic-image", overrides=_overrides(tasks=["vqa"], max_steps=2))
    run = tmp_path / "run"
    first = train_run(cfg, data, run, device="cpu", progress=False)
    table = data / "vqa" / "karpathy_train.arrow"
    t = open_task_table(table)
    write_stream_atomic(t.slice(0, t.num_rows - 1), table)  # one training example fewer
    with pytest.raises(ValueError, match="task tables"):
        train_run(cfg, data, run, device="cpu", progress=False)
    again = train_run(cfg, data, run, device="cpu", progress=False, replace=True)
    assert again["skipped"] is False and again["train"]["steps"] == 2
    aside = list(tmp_path.glob("run.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "model" / "trainable.safetensors").is_file()  # kept
    assert first["config"]["train_tables"] != again["config"]["train_tables"]


def test_train_cli_rejects_bad_configs(tasks_dir, tmp_path):
    from flows.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--preset", "nope", "--data", str(tasks_dir), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown preset" in res.output
    res = runner.invoke(app, ["train", "--preset", "synthetic-image", "--set", "epochz=3", "--data", str(tasks_dir),
                              "--out", str(tmp_path)])
    assert res.exit_code != 0 and "epochz" in res.output
    res = runner.invoke(app, ["train", "--preset", "synthetic-image", "--set", "tasks=[\"vqa\",\"tvqa\"]",
                              "--data", str(tasks_dir), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "mix image and video" in res.output


def test_missing_table_names_the_file(tasks_dir, tmp_path):
    cfg = load_train_config("synthetic-image", overrides=_overrides(tasks=["coco"]))
    with pytest.raises(FileNotFoundError, match=r"coco[/\\]train\.arrow"):
        train_run(cfg, tasks_dir, tmp_path / "run", device="cpu", progress=False)


def test_presets_copy_the_paper_scripts():
    from vlpet.train import PRESETS

    large = PRESETS["vl-pet-large-bart-image"]
    assert (large.lr, large.epochs, large.batch_size, large.warmup_ratio, large.clip_grad_norm) == (
        1e-3, 20, 500, 0.1, 5.0)
    assert (large.weight_decay, large.adam_eps, large.seed, large.loader_seed, large.precision) == (
        0.01, 1e-6, 42, 0, "fp32")
    t5 = PRESETS["vl-pet-small-t5-image"]
    assert (t5.backbone, t5.lr, t5.batch_size, t5.method) == ("t5-base", 3e-4, 300, "vl-pet-small")
    video = PRESETS["vl-pet-middley-bart-video"]
    assert (video.lr, video.batch_size, video.feat_dim, video.checkpoint_selection) == (7e-4, 50, 512, "best-val")
    assert video.tasks == ["tvqa", "how2qa", "tvc", "yc2c"]
    assert large.train_splits["gqa"] == ["train", "valid"] and large.test_splits["vqa"] == "karpathy_test"


def test_synthetic_presets_select_the_model_as_the_official_trainers():
    """Official multitask_video.py saves and tests ``best_avg_valid_model`` (best mean of the four validation
    scores); multitask.py (image) tests the LAST model."""
    from flows.runs import selection_note
    from vlpet.train import PRESETS

    video, image = PRESETS["synthetic-video"], PRESETS["synthetic-image"]
    assert (video.checkpoint_selection, video.validate_every_epoch) == ("best-val", True)
    assert (image.checkpoint_selection, image.validate_every_epoch) == ("last", False)
    note = selection_note({"selection": "best-val", "epochs_completed": 6, "steps": 60,
                           "best_val": {"score": 0.5, "epoch": 3, "step": 40}})
    assert "after epoch 4 of 6 (step 40)" in note and "0.5000" in note
    assert "the last one (step 60, 6 epochs)" in selection_note({"selection": "last", "epochs_completed": 6,
                                                                 "steps": 60, "best_val": None})


def test_concat_dataset_indexes_through_its_parts(tasks_dir):
    from pipelines.tasks import TaskDataset

    a = TaskDataset(tasks_dir / "gqa" / "train.arrow")
    b = TaskDataset(tasks_dir / "gqa" / "valid.arrow")
    both = ConcatTaskDataset([a, b])
    assert len(both) == len(a) + len(b)
    assert both.example(len(a))["example_id"] == b.example(0)["example_id"]
    assert both.example(len(a) - 1)["example_id"] == a.example(len(a) - 1)["example_id"]
    with pytest.raises(IndexError):
        both.example(len(both))


class _Stop(Exception):
    pass


def test_resume_through_the_real_loader_is_bit_identical(tasks_dir, tmp_path):
    """The memory-mapped loader restarts mid-epoch at the checkpoint's batch: same final weights."""
    import torch
    from safetensors.torch import load_file

    cfg = load_train_config("synthetic-image", overrides=_overrides(tasks=["vqa", "nlvr2"], epochs=2, max_steps=None,
                                                                    save_every_steps=2, batch_size=24))
    train_run(cfg, tasks_dir, tmp_path / "ref", device="cpu", progress=False)

    def stop(step: int) -> None:
        if step == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train_run(cfg, tasks_dir, tmp_path / "run", device="cpu", progress=False, on_step=stop)
    resumed = train_run(cfg, tasks_dir, tmp_path / "run", device="cpu", progress=False)
    assert resumed["train"]["resumed_from"].endswith("step-0000002")
    want = load_file(tmp_path / "ref" / "model" / "trainable.safetensors")
    got = load_file(tmp_path / "run" / "model" / "trainable.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_a_retrain_reuses_the_denoised_backbone_and_ends_bit_identical(tasks_dir, tmp_path, monkeypatch):
    """The denoised backbone depends on the texts, not the features: a second run with the same texts and
    settings copies it from the cache (verified against its manifest) and trains to the very same weights."""
    import torch

    import vlpet.pretrain

    cfg = load_train_config("synthetic-image", overrides=_overrides(tasks=["vqa"], max_steps=2))
    cache = tmp_path / "backbones"
    first = train_run(cfg, tasks_dir, tmp_path / "a", device="cpu", progress=False, backbone_cache=cache)
    entries = list(cache.iterdir())
    assert len(entries) == 1 and (entries[0] / "MANIFEST.json").is_file()

    made = {"count": 0}
    real = vlpet.pretrain.denoising_pretrain

    def counting(*args, **kwargs):
        made["count"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(vlpet.pretrain, "denoising_pretrain", counting)
    second = train_run(cfg, tasks_dir, tmp_path / "b", device="cpu", progress=False, backbone_cache=cache)
    assert made["count"] == 0  # reused, not pre-trained again
    assert second["config"]["backbone_pretraining"] == first["config"]["backbone_pretraining"]
    for name in ("model.safetensors", "tokenizer.json"):
        assert (tmp_path / "b" / "backbone" / name).read_bytes() == (tmp_path / "a" / "backbone" / name).read_bytes()
    want, got = _tensors(tmp_path / "a" / "model" / "trainable.safetensors"), _tensors(
        tmp_path / "b" / "model" / "trainable.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    (entries[0] / "model.safetensors").write_bytes(b"not the weights the manifest names")
    third = train_run(cfg, tasks_dir, tmp_path / "c", device="cpu", progress=False, backbone_cache=cache)
    assert made["count"] == 1  # the damaged entry was dropped and the backbone made afresh ...
    assert third["config"]["backbone_pretraining"] == first["config"]["backbone_pretraining"]
    assert (entries[0] / "model.safetensors").read_bytes() == (tmp_path / "a" / "backbone" / "model.safetensors"
                                                               ).read_bytes()  # ... and kept again

    other = load_train_config("synthetic-image", overrides=_overrides(
        tasks=["vqa"], max_steps=2, pretrain={"steps": 2, "batch_size": 4, "tokenizer_vocab_size": 400}))
    train_run(other, tasks_dir, tmp_path / "d", device="cpu", progress=False, backbone_cache=cache)
    assert made["count"] == 2 and len(list(cache.iterdir())) == 2  # other settings: another backbone
