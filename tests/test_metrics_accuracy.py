"""GQA / NLVR2 / TVQA accuracies on tiny crafted sets."""

from __future__ import annotations

import pytest

from vlpet.metrics import (
    gqa_accuracy,
    nlvr2_accuracy,
    nlvr2_consistency,
    nlvr2_sentence_key,
    tvqa_accuracy,
    tvqa_accuracy_per_show,
)


def test_gqa_label_dict_and_exact_match():
    labels = {"q1": {"pipe": 1.0}, "q2": {"yes": 1.0}, "q3": {"left": 1.0}}
    assert gqa_accuracy({"q1": "pipe", "q2": "no", "q3": "left"}, labels) == pytest.approx(2 / 3)
    # exact string match, no normalisation
    assert gqa_accuracy({"q1": "Pipe", "q2": "yes "}, {"q1": "pipe", "q2": "yes"}) == 0.0
    assert gqa_accuracy({"q1": "pipe"}, {"q1": "pipe"}) == 1.0
    assert gqa_accuracy({"q1": "a"}, {"q1": {"a": 0.6}}) == pytest.approx(0.6)


def test_nlvr2_accuracy_and_consistency():
    labels = {
        # sentence dev-1-*-0 over three pairs, all predicted right
        "dev-1-0-0": True, "dev-1-1-0": False, "dev-1-2-0": True,
        # sentence dev-1-*-1 over two pairs, one wrong
        "dev-1-0-1": "True", "dev-1-3-1": "False",
        # sentence dev-2-*-0, single pair, wrong
        "dev-2-5-0": 1,
    }
    preds = {
        "dev-1-0-0": "True", "dev-1-1-0": "False", "dev-1-2-0": True,
        "dev-1-0-1": 1, "dev-1-3-1": True,
        "dev-2-5-0": 0,
    }
    assert nlvr2_accuracy(preds, labels) == pytest.approx(4 / 6)
    assert nlvr2_consistency(preds, labels) == pytest.approx(1 / 3)
    assert nlvr2_sentence_key("dev-850-3-1") == "dev-850-1"
    with pytest.raises(ValueError):
        nlvr2_accuracy({}, labels)
    with pytest.raises(ValueError):
        nlvr2_accuracy({"dev-1-0-0": "maybe"}, {"dev-1-0-0": True})


def test_tvqa_accuracy():
    answers = {"q1": 3, "q2": 0, "q3": 4, "q4": 1}
    preds = {"q1": "a3", "q2": " a0\n", "q3": "a1", "q4": "1"}
    assert tvqa_accuracy(preds, answers) == pytest.approx(0.5)  # "1" is not "a1"
    assert tvqa_accuracy({"q1": 3, "q3": 2}, answers) == pytest.approx(0.5)
    shows = {"q1": "friends", "q2": "friends", "q3": "bbt", "q4": "bbt"}
    assert tvqa_accuracy_per_show(preds, answers, shows) == {"friends": 1.0, "bbt": 0.0}
