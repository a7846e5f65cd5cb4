"""vlpet.evaluation.generation: per-task generate kwargs, NLVR2 first-token logit comparison, video QA parsing."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from vlpet import build_model
from vlpet.batch import collate
from vlpet.evaluation import GENERATION, choice_index, generation, generation_kwargs, predict, predict_batch

FEAT = 16


@pytest.fixture(scope="module")
def models(tokenizers):
    # One intra-op thread: tiny matmuls on a busy 2-core box are ~100x slower with oversubscribed threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    for fam in ("bart", "t5"):
        model, _ = build_model(f"tiny-{fam}", "vl-pet-small", feat_dim=FEAT, tokenizer=tokenizers[fam], seed=0)
        out[fam] = model.eval()
    yield out
    torch.set_num_threads(threads)


def _rng_feats(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _batch(task: str, tok, n: int = 2, start: int = 0):
    examples = []
    for i in range(start, start + n):
        ex = {"task": task, "example_id": f"{task}-{i}", "text": f"what color is the circle {i}?"}
        if task == "nlvr2":
            ex.update(text=["there are two red shapes", "a red circle left of a blue square", "true"][i % 3],
                      vis=_rng_feats((2, 49, FEAT), i))
        elif task in ("tvqa", "how2qa"):
            ex.update(subs="red blue", ts="0.5-3.0", choices=["red", "blue", "yes", "no", "2"],
                      vis=_rng_feats((10 + i, FEAT), i))
        elif task in ("tvc", "yc2c"):
            ex.update(subs="a red circle", ts="0.5-3.0", vis=_rng_feats((70, FEAT), i))
        else:
            ex["vis"] = _rng_feats((49, FEAT), i)
        examples.append(ex)
    return collate(examples, tok, task)


@contextlib.contextmanager
def _no_eos(model, eos_id: int = 2):
    """Make the random BART decoder never end early, so generated texts are non-trivial."""
    bias = model.backbone.final_logits_bias
    old = bias.clone()
    with torch.no_grad():
        bias[0, eos_id] = -1e4
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(old)


def test_generation_table_matches_spec():
    assert GENERATION["vqa"] == {"num_beams": 1, "max_length": 20}
    assert GENERATION["gqa"] == {"num_beams": 1, "max_length": 20}
    assert GENERATION["coco"] == {"num_beams": 5, "max_length": 40}
    assert GENERATION["tvc"] == GENERATION["yc2c"] == {"num_beams": 5, "max_length": 20}
    assert GENERATION["tvqa"] == GENERATION["how2qa"] == {}
    assert "nlvr2" not in GENERATION


def test_bart_generation_config_holds_bart_base_defaults(models):
    gc = models["bart"].backbone.generation_config
    assert (gc.num_beams, gc.no_repeat_ngram_size, gc.early_stopping) == (4, 3, True)


@pytest.mark.parametrize("family, decoder_input", [("bart", [2, 0]), ("t5", [0])])
def test_nlvr2_compares_first_subtoken_logits(models, tokenizers, family, decoder_input):
    model, tok = models[family], tokenizers[family]
    batch = _batch("nlvr2", tok, n=4)
    true_id = tok("true", add_special_tokens=False).input_ids[0]
    false_id = tok("false", add_special_tokens=False).input_ids[0]
    # decoder input by hand: BART [</s>=2, <s>=0], T5 [<pad>=0]
    dec = torch.tensor([decoder_input] * 4)
    with torch.no_grad():
        last = model(batch.input_ids, batch.vis_feats, batch.attention_mask, decoder_input_ids=dec)["logits"][:, -1]
    expected = ["true" if last[i, true_id] > last[i, false_id] else "false" for i in range(4)]
    assert predict_batch(model, tok, batch) == expected


def test_nlvr2_direction_follows_logits(models, tokenizers):
    """Pushing the 'true' (then 'false') logit up flips every prediction: the comparison is not inverted."""
    model, tok = models["bart"], tokenizers["bart"]
    batch = _batch("nlvr2", tok, n=3)
    bias = model.backbone.final_logits_bias
    old = bias.clone()
    try:
        for word in ("true", "false"):
            with torch.no_grad():
                bias.copy_(old)
                bias[0, tok(word, add_special_tokens=False).input_ids[0]] = 1e4
            assert predict_batch(model, tok, batch) == [word] * 3
    finally:
        with torch.no_grad():
            bias.copy_(old)


def test_greedy_vqa_equals_generate_num_beams_1(models, tokenizers):
    model, tok = models["bart"], tokenizers["bart"]
    batch = _batch("vqa", tok, n=3)
    with _no_eos(model):
        ids = model.generate(batch.input_ids, batch.vis_feats, batch.attention_mask, num_beams=1, max_length=20)
        expected = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
        got = predict_batch(model, tok, batch)
    assert ids.shape[1] == 20  # EOS suppressed: runs to max_length
    assert all(expected) and got == expected


def test_video_qa_uses_backbone_defaults(models, tokenizers):
    """No kwargs for TVQA: bart-base's 4 beams, no-repeat-3, early stopping, capped at max_length 20."""
    model, tok = models["bart"], tokenizers["bart"]
    batch = _batch("tvqa", tok, n=2)
    with _no_eos(model):
        ids = model.generate(batch.input_ids, batch.vis_feats, batch.attention_mask, num_beams=4,
                             no_repeat_ngram_size=3, early_stopping=True, max_length=20)
        expected = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
        assert all(expected) and predict_batch(model, tok, batch) == expected


class _Recorder:
    """Stands in for ``model.generate``: records kwargs, returns ``</s> <s> red </s>`` per example."""

    def __init__(self, tok) -> None:
        self.calls: list[dict] = []
        red = tok("red", add_special_tokens=False).input_ids
        self.row = [2, 0, *red, 2]

    def __call__(self, input_ids, vis_feats, attention_mask=None, **kwargs):
        self.calls.append({"n": input_ids.shape[0], "vis_dims": vis_feats.dim(), **kwargs})
        return torch.tensor([self.row] * input_ids.shape[0])


def test_each_task_batch_gets_its_generation_kwargs(models, tokenizers, monkeypatch):
    model, tok = models["bart"], tokenizers["bart"]
    rec = _Recorder(tok)
    monkeypatch.setattr(model, "generate", rec)
    batches = [_batch("vqa", tok, n=2), _batch("coco", tok, n=1), _batch("tvqa", tok, n=3), _batch("tvc", tok, n=1)]
    preds = predict(model, tok, batches)
    assert preds == {"vqa-0": "red", "vqa-1": "red", "coco-0": "red", "tvqa-0": "red", "tvqa-1": "red",
                     "tvqa-2": "red", "tvc-0": "red"}
    assert [c["n"] for c in rec.calls] == [2, 1, 3, 1]
    strip = [{k: v for k, v in c.items() if k not in ("n", "vis_dims", "vis_attention_mask")} for c in rec.calls]
    assert strip == [{"num_beams": 1, "max_length": 20}, {"num_beams": 5, "max_length": 40},
                     {"max_length": 20}, {"num_beams": 5, "max_length": 20}]
    # video batches carry their frame mask through to generate
    assert rec.calls[2]["vis_attention_mask"] is not None and rec.calls[0]["vis_attention_mask"] is None


def test_overrides_and_config_length(models, tokenizers, monkeypatch):
    model = models["t5"]
    assert generation_kwargs(model, "vqa", {"max_new_tokens": 5}) == {"num_beams": 1, "max_new_tokens": 5}
    assert generation_kwargs(model, "coco", {"num_beams": 2}) == {"num_beams": 2, "max_length": 40}
    assert generation_kwargs(model, "how2qa") == {"max_length": 20}
    monkeypatch.setattr(model.backbone.generation_config, "max_length", 30)
    assert generation_kwargs(model, "how2qa") == {}  # the config bounds it already
    with pytest.raises(ValueError, match="nlvr2"):
        generation_kwargs(model, "nlvr2")
    with pytest.raises(ValueError, match="'foo'"):
        generation_kwargs(model, "foo")


def test_predict_restores_mode_and_rejects_duplicate_ids(models, tokenizers, monkeypatch):
    model, tok = models["bart"], tokenizers["bart"]
    monkeypatch.setattr(model, "generate", _Recorder(tok))
    model.train()
    try:
        seen_training = []

        def spy(m, *args, **kwargs):
            seen_training.append(m.training)
            return predict_batch(m, *args, **kwargs)

        monkeypatch.setattr(generation, "predict_batch", spy)
        predict(model, tok, [_batch("vqa", tok, n=1)])
        assert seen_training == [False] and model.training
        with pytest.raises(ValueError, match="duplicate example_id 'vqa-0'"):
            predict(model, tok, [_batch("vqa", tok, n=1), _batch("vqa", tok, n=1)])
    finally:
        model.eval()


@pytest.mark.parametrize("text, expected", [
    ("a3", 3), (" a0 ", 0), ("a4.", 4), ("a12", 1), ("a", None), ("ax", None), ("", None), ("3", None),
    ("a\u00b2", None),  # str.isdigit() accepts "²", but upstream's int() raises on it
])
def test_choice_index(text, expected):
    assert choice_index(text) == expected
