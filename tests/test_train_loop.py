"""The trainer: official optimizer groups and schedule, gradient accumulation, and exact resume after a kill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from vlpet import build_model
from vlpet.batch import collate
from vlpet.train import ListBatchSource, TrainConfig, Trainer, build_optimizer, build_scheduler, parameter_groups

FEAT = 16
ROOT = Path(__file__).resolve().parents[1]


def _examples(n: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    colors = ["red", "blue"]
    out = []
    for i in range(n):
        c = i % 2
        vis = torch.randn(49, FEAT, generator=gen) + (2.0 if c else -2.0)
        out.append({"task": "vqa", "example_id": f"{seed}-{i}", "text": "what color is the circle?",
                    "target": colors[c], "weight": 1.0, "vis": vis.numpy()})
    return out


def _batches(tok, n_batches: int = 6, size: int = 4, seed: int = 0) -> list:
    return [collate(_examples(size, seed * 100 + b), tok, "vqa") for b in range(n_batches)]


def _cfg(**kw) -> TrainConfig:
    base = dict(name="t", backbone="tiny-bart", method="vl-pet-large", tasks=["vqa"], feat_dim=FEAT, lr=3e-3,
                epochs=2, batch_size=4, precision="fp32", save_every_steps=2, seed=0)
    return TrainConfig(**{**base, **kw})


def _model(tok, **kw):
    model, _ = build_model("tiny-bart", "vl-pet-large", feat_dim=FEAT, tokenizer=tok, seed=0, **kw)
    return model


def _trainable(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.trainable_state_dict().items()}


def test_parameter_groups_follow_the_official_name_rule():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(2, 2)
            self.LayerNorm = nn.LayerNorm(2)
            self.final_layer_norm = nn.LayerNorm(2)
            self.frozen = nn.Linear(2, 2)
            self.frozen.requires_grad_(False)

    toy = Toy()
    decay, no_decay = parameter_groups(toy, 0.01)
    names = {id(p): n for n, p in toy.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["dense.weight", "final_layer_norm.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "LayerNorm.bias", "LayerNorm.weight", "dense.bias", "final_layer_norm.bias"]
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    opt = build_optimizer(toy, lr=1e-3)
    assert opt.defaults["eps"] == 1e-6 and opt.defaults["betas"] == (0.9, 0.999)


def test_bart_layer_norm_weights_are_decayed(tokenizers):
    model = _model(tokenizers["bart"])
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert any(n.endswith("self_attn_layer_norm.weight") for n in decayed)  # trainable encoder LN: decayed
    assert all(names[id(p)].endswith("bias") for p in no_decay["params"])


def test_linear_warmup_then_decay_by_hand():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = build_scheduler(opt, total_steps=20, warmup_ratio=0.1)  # warm-up int(20*0.1) = 2 steps
    lrs = []
    for _ in range(20):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:4] == [0.0, 0.5, 1.0, pytest.approx(17 / 18)]
    assert lrs[11] == pytest.approx((20 - 11) / 18)
    assert sched.get_last_lr()[0] == 0.0


def test_training_reduces_loss_and_writes_the_run(tokenizers, tmp_path):
    tok = tokenizers["bart"]
    model = _model(tok)
    result = Trainer(model, _cfg(epochs=3), ListBatchSource(_batches(tok)), tmp_path / "run", tokenizer=tok,
                     progress=False).fit()
    assert result.steps == result.total_steps == 18
    losses = [json.loads(ln) for ln in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses] == list(range(1, 19))
    assert sum(r["loss"] for r in losses[-6:]) < sum(r["loss"] for r in losses[:6])
    assert (tmp_path / "run" / "model" / "trainable.safetensors").is_file()
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))
    assert (tmp_path / "run" / "checkpoints" / "LATEST").read_text().strip() == "step-0000018"
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 2  # keep_checkpoints


def test_grad_accumulation_matches_one_big_batch(tokenizers, tmp_path):
    tok = tokenizers["bart"]
    ex = _examples(8, 7)
    no_dropout = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    big, small = _model(tok, **no_dropout), _model(tok, **no_dropout)
    cfg = _cfg(epochs=1, save_every_steps=None, warmup_ratio=0.0)
    Trainer(big, cfg, ListBatchSource([collate(ex, tok, "vqa")]), tmp_path / "a", progress=False,
            tensorboard=False).fit()
    Trainer(small, cfg.model_copy(update={"grad_accum_steps": 2}),
            ListBatchSource([collate(ex[:4], tok, "vqa"), collate(ex[4:], tok, "vqa")]), tmp_path / "b",
            progress=False, tensorboard=False).fit()
    a, b = _trainable(big), _trainable(small)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


class _Stop(Exception):
    pass


def _run_stopped_at(step_to_stop: int, tok, cfg, batches, out) -> None:
    """Train into ``out`` until ``on_step`` sees ``step_to_stop``, then stop as a crash would."""

    def stop(step: int) -> None:
        if step == step_to_stop:
            raise _Stop

    with pytest.raises(_Stop):
        Trainer(_model(tok), cfg, ListBatchSource(batches), out, tokenizer=tok, progress=False,
                tensorboard=False, on_step=stop).fit()


def test_resume_after_interruption_is_bit_identical(tokenizers, tmp_path):
    tok = tokenizers["bart"]
    batches = _batches(tok, n_batches=5)
    cfg = _cfg(epochs=2, grad_accum_steps=2)  # 3 steps/epoch (2+2+1 batches), checkpoints every 2 steps

    ref = _model(tok)
    Trainer(ref, cfg, ListBatchSource(batches), tmp_path / "ref", tokenizer=tok, progress=False,
            tensorboard=False).fit()

    _run_stopped_at(5, tok, cfg, batches, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "LATEST").read_text().strip() == "step-0000004"
    torch.manual_seed(12345)  # the resumed run must restore the RNG, not depend on the process's state
    resumed_model = _model(tok)
    result = Trainer(resumed_model, cfg, ListBatchSource(batches), tmp_path / "run", tokenizer=tok,
                     progress=False, tensorboard=False).fit()
    assert result.resumed_from and result.resumed_from.endswith("step-0000004")
    want, got = _trainable(ref), _trainable(resumed_model)
    assert all(torch.equal(want[k], got[k]) for k in want)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    ref_steps = [json.loads(ln)["step"] for ln in (tmp_path / "ref" / "losses.jsonl").read_text().splitlines()]
    assert steps == ref_steps


def test_resume_with_another_config_is_refused(tokenizers, tmp_path):
    tok = tokenizers["bart"]
    batches = _batches(tok, n_batches=2)
    Trainer(_model(tok), _cfg(epochs=1), ListBatchSource(batches), tmp_path / "run", progress=False,
            tensorboard=False).fit()
    with pytest.raises(ValueError, match="another training config"):
        Trainer(_model(tok), _cfg(epochs=1, lr=1e-2), ListBatchSource(batches), tmp_path / "run", progress=False,
                tensorboard=False).fit()


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, warnings
    warnings.simplefilter("ignore")
    sys.path.insert(0, {root!r})
    import torch
    torch.set_num_threads(int(sys.argv[3]))  # the parent's: float reductions must run in the same order
    from tests.conftest import TEXTS
    from tests.test_train_loop import _batches, _cfg, _model
    from vlpet.tokenization import train_tokenizer
    from vlpet.train import ListBatchSource, Trainer
    tok = train_tokenizer(TEXTS * 10, "bart", vocab_size=300)
    def kill(step):
        if step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
    Trainer(_model(tok), _cfg(epochs=2, save_every_steps=1), ListBatchSource(_batches(tok, n_batches=4)),
            sys.argv[1], tokenizer=tok, progress=False, tensorboard=False, on_step=kill).fit()
""")


def test_resume_after_kill_9_is_bit_identical(tokenizers, tmp_path):
    """A real SIGKILL in a child process mid-run; the resumed run ends with the uninterrupted run's weights."""
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), "6", str(torch.get_num_threads())],
                          env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "model").exists()
    from tests.conftest import TEXTS
    from vlpet.tokenization import train_tokenizer

    tok = train_tokenizer(TEXTS * 10, "bart", vocab_size=300)  # the same tokenizer the child trained
    cfg = _cfg(epochs=2, save_every_steps=1)
    ref = _model(tok)
    Trainer(ref, cfg, ListBatchSource(_batches(tok, n_batches=4)), tmp_path / "ref", progress=False,
            tensorboard=False).fit()
    resumed = _model(tok)
    result = Trainer(resumed, cfg, ListBatchSource(_batches(tok, n_batches=4)), tmp_path / "run", progress=False,
                     tensorboard=False).fit()
    assert result.resumed_from is not None and result.steps == 8
    want, got = _trainable(ref), _trainable(resumed)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_max_steps_stops_mid_epoch_and_records_the_position(tokenizers, tmp_path):
    tok = tokenizers["bart"]
    result = Trainer(_model(tok), _cfg(epochs=3, max_steps=4, save_every_steps=None),
                     ListBatchSource(_batches(tok, n_batches=3)), tmp_path / "run", progress=False,
                     tensorboard=False).fit()
    assert result.steps == result.total_steps == 4
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-0000004" / "trainer_state.json").read_text())
    assert state["position"] == {"epoch": 1, "next_batch": 1, "global_step": 4, "best_val": None}


def test_a_corrupt_checkpoint_names_its_file_and_resume_falls_back_to_the_previous_one(tokenizers, tmp_path):
    from vlpet.checkpoint import CheckpointCorruptError

    tok = tokenizers["bart"]
    batches = _batches(tok, n_batches=5)
    cfg = _cfg(epochs=2, grad_accum_steps=2, keep_checkpoints=2)  # the last two checkpoints are kept
    ref = _model(tok)
    Trainer(ref, cfg, ListBatchSource(batches), tmp_path / "ref", tokenizer=tok, progress=False,
            tensorboard=False).fit()

    _run_stopped_at(5, tok, cfg, batches, tmp_path / "run")
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-0000003", "step-0000004"]  # epoch end, step 4
    bad = ckpts / "step-0000004" / "optimizer.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"{not a header")  # what a torn write or a disk error leaves
    with pytest.raises(CheckpointCorruptError, match=re.escape(str(bad))):
        from vlpet.train.state import load_trainer_state

        m = _model(tok)
        opt = build_optimizer(m, 1e-3, 0.0, 1e-6, (0.9, 0.999))
        load_trainer_state(ckpts / "step-0000004", opt, build_scheduler(opt, 4, 0.0), None)
    resumed = _model(tok)
    result = Trainer(resumed, cfg, ListBatchSource(batches), tmp_path / "run", tokenizer=tok, progress=False,
                     tensorboard=False).fit()
    assert result.resumed_from and result.resumed_from.endswith("step-0000003")  # the previous kept one
    want, got = _trainable(ref), _trainable(resumed)
    assert all(torch.equal(want[k], got[k]) for k in want)  # and the run still ends bit-identical


def test_best_val_selection_keeps_the_best_epochs_weights_as_the_final_model(tokenizers, tmp_path):
    from vlpet.checkpoint import load_trainable

    tok = tokenizers["bart"]
    scores = {0: 0.2, 1: 0.7, 2: 0.4}  # epoch 1 is the best: its weights, not the last ones, become model/
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def validate(model, epoch):
        seen[epoch] = _trainable(model)
        return {"score": scores[epoch]}

    cfg = _cfg(epochs=3, save_every_steps=None, checkpoint_selection="best-val", validate_every_epoch=True)
    result = Trainer(_model(tok), cfg, ListBatchSource(_batches(tok, n_batches=2)), tmp_path / "run",
                     tokenizer=tok, progress=False, tensorboard=False, validate=validate).fit()
    assert sorted(seen) == [0, 1, 2]
    assert result.best_val == {"score": 0.7, "epoch": 1, "step": 4}  # 2 steps per epoch
    final = _model(tok)
    load_trainable(final, tmp_path / "run" / "model")
    got = _trainable(final)
    assert all(torch.equal(got[k], seen[1][k]) for k in got)
    assert not all(torch.equal(got[k], seen[2][k]) for k in got)
