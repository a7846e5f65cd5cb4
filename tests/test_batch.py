"""vlpet.batch: task input/target text as docs/data.md §4.3 and §5 describe, soft-label sampling, collation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vlpet.batch import TASK_FORMATS, collate, format_input, sample_answer, task_batch_sizes, task_format
from vlpet.tokenization import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    words = "vqa gpa nlvr caption tvqa how2qa tvc yc2c [Subs] [Q] [TS] [Choices] a0 a1 a2 a3 true false what is"
    return train_tokenizer([words] * 4, "bart", vocab_size=300)


def _grid(f: int = 8) -> np.ndarray:
    return np.ones((49, f), dtype=np.float16)


VIDEO_QA = {"text": "What is Ted holding?", "ts": "20.16-25.12", "subs": "Ted : Hi. Robin : Hey.",
            "choices": ["A cup. ", "A book.", "A phone", "Nothing.", "A pen."]}


@pytest.mark.parametrize("task, example, expected", [
    ("vqa", {"text": "What color is the cat?"}, "vqa: What color is the cat?"),
    ("gqa", {"text": "Is the bowl on the left?"}, "gpa: Is the bowl on the left?"),
    ("nlvr2", {"text": "There are two dogs."}, "nlvr: There are two dogs."),
    ("coco", {"text": ""}, "caption: "),
    ("tvqa", VIDEO_QA, "[Subs] Ted : Hi. Robin : Hey. [Q] What is Ted holding? [TS] (20.16-25.12) [Choices] "
                       "a0: A cup. a1: A book. a2: A phone. a3: Nothing. a4: A pen. tvqa: "),
    ("how2qa", dict(VIDEO_QA, choices=VIDEO_QA["choices"][:4]),
     "[Subs] Ted : Hi. Robin : Hey. [Q] What is Ted holding? [TS] (20.16-25.12) [Choices] "
     "a0: A cup. a1: A book. a2: A phone. a3: Nothing. how2qa: "),
    ("tvc", {"subs": "Ted : Hi.", "ts": "[0.5, 3.0]"}, "[Subs] Ted : Hi. [TS] ([0.5, 3.0]) tvc: "),
    ("yc2c", {"subs": "add the salt"}, "[Subs] add the salt yc2c: "),
])
def test_input_text_matches_the_spec(task, example, expected):
    assert format_input(task_format(task), example) == expected


@pytest.mark.parametrize("task", ["tvqa", "how2qa"])
def test_video_question_is_stripped_as_upstream(task):
    # upstream writes f"[Q] {datum['q'].strip()}"
    text = format_input(task_format(task), {"text": " Why? ", "ts": "1-2", "subs": "Hi.", "choices": ["a", "b"]})
    assert text.startswith("[Subs] Hi. [Q] Why? [TS] (1-2) [Choices]")


def test_nlvr2_statement_is_not_truncated(tok):
    """Upstream: ``tokenizer.encode(f"{prompt}{sent}")`` with no max_length, so a 60-word statement keeps all."""
    statement = " ".join(["what"] * 60)
    ex = {"task": "nlvr2", "text": statement, "vis": np.ones((2, 49, 8), dtype=np.float16), "target": "true"}
    batch = collate([ex], tok, "nlvr2")
    expected = tok("nlvr: " + statement).input_ids  # upstream's encode: <s> ... </s>, untruncated
    assert len(expected) >= 62 and expected[-1] == tok.eos_token_id
    assert batch.input_ids[0].tolist() == expected


def test_formats_and_batch_sizes_follow_the_spec():
    assert {t: (f.max_input_len, f.max_target_len) for t, f in TASK_FORMATS.items()} == {
        "vqa": (20, 10), "gqa": (20, None), "nlvr2": (None, None), "coco": (40, 40),
        "tvqa": (600, 20), "how2qa": (600, 20), "tvc": (600, 20), "yc2c": (600, 20)}
    tasks = ["vqa", "gqa", "nlvr2", "coco", "tvqa"]
    assert task_batch_sizes(500, tasks) == {"vqa": 500, "gqa": 833, "nlvr2": 166, "coco": 416, "tvqa": 500}
    assert task_batch_sizes(300, tasks) == {"vqa": 300, "gqa": 500, "nlvr2": 100, "coco": 250, "tvqa": 300}
    with pytest.raises(ValueError, match="unknown task 'vqa2'"):
        task_batch_sizes(10, ["vqa2"])


def test_soft_label_sampling_is_proportional_to_score_and_weight_is_the_score():
    rng = random.Random(0)
    draws = [sample_answer(["2", "3"], [1.0, 0.6], rng) for _ in range(20000)]
    share = sum(a == "2" for a, _ in draws) / len(draws)
    assert abs(share - 1 / 1.6) < 0.015
    assert all(w == pytest.approx({"2": 1.0, "3": 0.6}[a]) for a, w in draws)
    with pytest.raises(ValueError, match="positive sum"):
        sample_answer(["x"], [0.0], rng)


def test_collate_vqa_weighted_soft_labels(tok):
    ex = [{"task": "vqa", "example_id": "1", "text": "what is " * 30, "answers": ["2", "3"], "scores": [1.0, 0.6],
           "vis": _grid()}, {"task": "vqa", "example_id": "2", "text": "what", "target": "true", "weight": 0.3,
                             "vis": _grid()}]
    b = collate(ex, tok, "vqa", rng=random.Random(1))
    assert b.task == "vqa" and b.input_ids.shape[0] == 2 and b.input_ids.shape[1] == 20  # truncated to 20
    assert b.vis_feats.shape == (2, 49, 8) and b.vis_feats.dtype == torch.float32 and b.vis_attention_mask is None
    w0 = {"2": 1.0, "3": 0.6}[b.targets[0]]
    assert b.loss_weights.tolist() == pytest.approx([w0, 0.3])
    assert (b.labels[1] == -100).any() or b.labels.shape[1] == (b.labels[1] != -100).sum()
    assert b.labels[0, 0].item() == tok.bos_token_id and b.example_ids == ["1", "2"]


def test_collate_gqa_is_unweighted_and_nlvr_pairs(tok):
    b = collate([{"task": "gqa", "text": "what", "answers": ["a0"], "scores": [1.0], "vis": _grid()}], tok, "gqa")
    assert b.loss_weights is None and b.targets == ["a0"]
    pair = np.stack([_grid(), _grid()])
    b = collate([{"task": "nlvr2", "text": "is", "target": "true", "vis": pair}] * 3, tok, "nlvr2")
    assert b.vis_feats.shape == (3, 2, 49, 8) and b.targets == ["true"] * 3
    with pytest.raises(ValueError, match="visual shape"):
        collate([{"task": "nlvr2", "example_id": "x", "text": "is", "target": "true", "vis": _grid()}], tok, "nlvr2")


def test_collate_video_resizes_to_64_frames_with_mask(tok):
    short = np.ones((10, 4), dtype=np.float16)
    long = np.arange(100 * 4, dtype=np.float32).reshape(100, 4).astype(np.float16)
    ex = [dict(VIDEO_QA, task="tvqa", target="a1", vis=short), dict(VIDEO_QA, task="tvqa", target="a3", vis=long)]
    b = collate(ex, tok, "tvqa")
    assert b.vis_feats.shape == (2, 64, 4)
    assert b.vis_attention_mask[0].sum() == 10 and b.vis_attention_mask[1].sum() == 64
    assert b.vis_feats[0, 10:].abs().sum() == 0 and b.labels.shape[0] == 2 and b.targets == ["a1", "a3"]
    long_subs = dict(ex[0], subs="Ted " * 2000)
    assert collate([long_subs], tok, "tvqa").input_ids.shape[1] == 600


def test_collate_rejects_mixed_tasks(tok):
    with pytest.raises(ValueError, match="single-task"):
        collate([{"task": "vqa", "text": "a", "target": "b", "vis": _grid()},
                 {"task": "gqa", "text": "a", "target": "b", "vis": _grid()}], tok, "vqa")


def test_batch_crosses_processes_with_small_tensors_inline_and_features_shared():
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # registers the shared-memory tensor reducers on ForkingPickler

    from vlpet.batch import VLBatch, shared_tensor

    vis = shared_tensor((3, 49, 2048), torch.float32)  # 1.2 MB, made in shared memory as a worker does
    vis.copy_(torch.arange(3 * 49 * 2048, dtype=torch.float32).reshape(3, 49, 2048))
    ids = torch.tensor([[0, 5, 2], [0, 7, 2], [0, 9, 1]])
    b = VLBatch("vqa", ids, ids != 1, vis, labels=ids.masked_fill(ids == 1, -100),
                loss_weights=torch.tensor([1.0, 0.5, 0.25]), targets=["a", "b", "c"], example_ids=["1", "2", "3"])
    c = ForkingPickler.loads(bytes(ForkingPickler.dumps(b)))
    assert c.task == "vqa" and c.targets == ["a", "b", "c"] and c.vis_attention_mask is None
    for name in ("input_ids", "attention_mask", "labels", "loss_weights", "vis_feats"):
        x, y = getattr(b, name), getattr(c, name)
        assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), name
    assert not c.input_ids.is_shared() and not c.labels.is_shared()  # sent as bytes, no shared segment each
    assert c.vis_feats.is_shared() and c.vis_feats[2, 48, 2047] == 3 * 49 * 2048 - 1


def test_ring_slots_are_reused_grown_and_capped(monkeypatch):
    from vlpet import batch as vb

    monkeypatch.setattr(vb, "_RING", [])
    a = vb.ring_tensor((4, 8), torch.float32)
    first = vb._RING[0][0]
    a.fill_(1)
    vb._RING[0][1][0] = 0  # the consumer freed it
    b = vb.ring_tensor((2, 8), torch.float32)
    assert len(vb._RING) == 1 and b.data_ptr() == a.data_ptr()  # reused
    big = vb.ring_tensor((3 << 20,), torch.uint8)  # 3 MB: the busy 1 MB slot stays, a bigger one is made
    assert len(vb._RING) == 2 and vb._RING[0][0] is first and big.numel() == 3 << 20
    vb._RING[1][1][0] = 0
    vb._RING[0][1][0] = 0
    huge = vb.ring_tensor((5 << 20,), torch.uint8)  # neither free slot fits: both are dropped for a new one
    assert len(vb._RING) == 1 and huge.numel() == 5 << 20
    monkeypatch.setattr(vb, "_RING_MAX_BYTES", 6 << 20)
    over = vb.ring_tensor((2 << 20,), torch.uint8)  # the 6 MB slot is busy and the cap reached: outside the ring
    assert len(vb._RING) == 1 and over.is_shared() and vb._ring_ref(over) is None


def test_batch_buffers_are_reused_only_when_unreferenced(monkeypatch):
    from vlpet import batch as vb

    monkeypatch.setattr(vb, "_POOL", [])
    a = vb.batch_buffer((3, 4), np.float32)
    a[:] = 1
    t = torch.from_numpy(a[1:])  # a tensor over part of it keeps the buffer in use
    del a
    b = vb.batch_buffer((3, 4), np.float32)
    b[:] = 2
    assert t.eq(1).all() and len(vb._POOL) == 2
    addr = b.ctypes.data
    del b
    assert vb.batch_buffer((2, 4), np.float32).ctypes.data == addr  # free again: reused
    monkeypatch.setattr(vb, "POOL_MAX_BYTES", 2 << 20)
    # 1 MB each, all held: the free 1 MB buffer serves the first, then the cap (two 1 MB buffers) is reached and
    # the others are plain arrays outside the pool
    held = [vb.batch_buffer((1 << 18,), np.float32) for _ in range(3)]
    assert [any(h.base is p for p in vb._POOL) for h in held] == [True, False, False] and len(vb._POOL) == 2


def test_batch_buffers_most_recently_used_first(monkeypatch):
    """The free buffer handed out is the one used last (still in the CPU cache), not the smallest that fits;
    new buffers are as large as the largest so far, so any free one fits any later batch."""
    from vlpet import batch as vb

    monkeypatch.setattr(vb, "_POOL", [])
    mb = 1 << 20
    x = vb.batch_buffer((mb,), np.uint8)  # A: 1 MB
    y = vb.batch_buffer((2 * mb,), np.uint8)  # B: 2 MB (A is held)
    z = vb.batch_buffer((mb // 2,), np.uint8)  # C: 2 MB, as large as the largest so far
    assert [b.nbytes for b in vb._POOL] == [mb, 2 * mb, 2 * mb]
    addr = {"A": x.ctypes.data, "B": y.ctypes.data, "C": z.ctypes.data}
    del y, x, z  # all free; C was handed out last
    w = vb.batch_buffer((mb // 4,), np.uint8)
    assert w.ctypes.data == addr["C"]  # best fit would have taken A
    # a consumer holding one batch while the next is gathered: the last two buffers take turns
    seen = []
    for n in (mb, mb // 2, 2 * mb, mb):
        w = vb.batch_buffer((n,), np.uint8)
        seen.append(w.ctypes.data)
    assert seen == [addr["B"], addr["C"], addr["B"], addr["C"]] and len(vb._POOL) == 3
