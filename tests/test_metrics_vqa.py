"""VQA v2 accuracy pinned to hand-computed values of the official vqaEval.py rules."""

from __future__ import annotations

import pytest

from pipelines.tables import vqa_normalize as pipe
from vlpet.metrics import normalize_answer, vqa_accuracy, vqa_corpus_accuracy
from vlpet.metrics import vqa as vq


def test_leave_one_out_hand_values():
    # 3 of 10 match: matching annotators see 2 others (2/3), the other 7 see 3 (1) -> (3*2/3 + 7)/10
    assert vqa_accuracy("2", ["2"] * 3 + ["red"] * 7) == pytest.approx(0.9)
    # 2 matches: (2*(1/3) + 8*(2/3))/10 = 0.6
    assert vqa_accuracy("2", ["2"] * 2 + ["red"] * 8) == pytest.approx(0.6)
    # 1 match: (1*0 + 9*(1/3))/10 = 0.3
    assert vqa_accuracy("2", ["2"] + ["red"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("2", ["red"] * 10) == 0.0
    # 4 or more matches: every leave-one-out has >= 3 -> 1
    assert vqa_accuracy("2", ["2"] * 4 + ["red"] * 6) == 1.0


def test_gt_answers_get_punctuation_only_not_number_words():
    # GT "two" is not turned into "2" (only processPunctuation applies to GT), so 3 matches -> 0.9
    answers = ["2"] * 3 + ["two"] * 7
    assert vqa_accuracy("2", answers) == pytest.approx(0.9)
    # the prediction gets the full normalisation: "Two" -> "2"
    assert normalize_answer("Two") == "2"
    assert vqa_accuracy("Two", answers) == pytest.approx(0.9)
    assert vqa_accuracy("two", ["two"] * 3 + ["2"] * 7) == 1.0  # pred "2" matches the 7


def test_all_agree_means_no_gt_processing():
    assert vqa_accuracy("Yes.", ["yes"] * 10) == 1.0  # prediction normalised to "yes"
    # identical GTs are left raw: "two." never equals a normalised prediction
    assert vqa_accuracy("two.", ["two."] * 10) == 0.0
    assert vqa_accuracy("yes!", ["yes!"] * 10) == 0.0
    # ... but as soon as they disagree, the GT punctuation step runs ("yes!" -> "yes ")
    # "yes!" -> "yes " (not stripped), so still no match with the normalised "yes"
    assert vq.process_punctuation("yes!") == "yes "
    assert vqa_accuracy("yes", ["yes!"] * 9 + ["no"]) == 0.0
    # a period at the end is removed from the GT when they disagree
    assert vqa_accuracy("yes", ["yes."] * 9 + ["no"]) == 1.0


def test_prediction_normalisation_rules():
    assert normalize_answer("  The Dog\n") == "dog"
    assert normalize_answer("an apple") == "apple"
    assert normalize_answer("dont know") == "don't know"
    assert normalize_answer("t-shirt") == "t shirt"
    assert normalize_answer("t - shirt") == "t shirt"  # "-" touches a space -> deleted
    assert normalize_answer("1,000") == "1000"  # digit-comma-digit -> punctuation deleted
    assert normalize_answer("3.5") == "3.5"
    assert normalize_answer("none") == "0"
    assert normalize_answer("ten") == "10"
    assert vqa_accuracy("T-Shirt", ["t-shirt"] * 5 + ["shirt"] * 5) == 1.0






def test_pipelines_uses_the_same_normaliser():
    """Soft labels (pipelines) and the metric (vlpet) share one implementation."""
    assert pipe.normalize_answer is normalize_answer and pipe.CONTRACTIONS is vq.CONTRACTIONS


def test_corpus_accuracy_x100_and_per_type():
    preds = {1: "2", 2: "yes", 3: "red", 4: "no"}
    answers = {1: ["2"] * 3 + ["two"] * 7, 2: ["yes"] * 10, 3: ["blue"] * 10, 4: ["no"] + ["yes"] * 9}
    atypes = {1: "number", 2: "yes/no", 3: "other", 4: "yes/no"}
    out = vqa_corpus_accuracy(preds, answers, answer_types=atypes)
    # per question: 0.9, 1.0, 0.0, 0.3
    assert out["overall"] == round(100 * (0.9 + 1.0 + 0.0 + 0.3) / 4, 2) == 55.0
    assert out["perAnswerType"] == {"number": 90.0, "yes/no": 65.0, "other": 0.0}
    assert out["perQuestionType"] == {}


def test_empty_answers_rejected():
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])
