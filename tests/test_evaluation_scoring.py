"""vlpet.evaluation.scoring: per-task scores and the majority baseline against hand-computed values."""

from __future__ import annotations

import pytest

from vlpet.evaluation import TASK_METRIC, EvalExample, majority_baseline, majority_prediction, score_task
from vlpet.metrics import caption_scores, cider

E = EvalExample


def test_task_metric_table():
    assert TASK_METRIC == {"vqa": "vqa_accuracy", "gqa": "accuracy", "nlvr2": "accuracy", "coco": "CIDEr",
                           "tvqa": "accuracy", "how2qa": "accuracy", "tvc": "CIDEr", "yc2c": "CIDEr"}


def test_vqa_official():
    # q1: 2 of 10 annotators said "yes": matching positions 1/3 each, the other 8 get 2/3 -> (2/3 + 16/3)/10 = 0.6
    # q2: 8 of 10 said "no": every position sees >= 7 other matches -> 1.0. Mean 0.8.
    examples = [E("q1", ["no", "yes"], [1.0, 0.6], ["yes"] * 2 + ["no"] * 8),
                E("q2", ["no", "yes"], [1.0, 0.6], ["no"] * 8 + ["yes"] * 2)]
    out = score_task("vqa", {"q1": "yes", "q2": "no"}, examples)
    assert out["score"] == pytest.approx(0.8)
    assert (out["task"], out["metric"], out["n"], out["unlabelled"], out["vqa_scoring"]) == (
        "vqa", "vqa_accuracy", 2, 0, "official")


def test_vqa_soft_labels_when_raw_answers_missing():
    # label lookup on the raw prediction: 0.3 + 0 ("cat" not a label) -> 0.15; one example lacks raw answers
    examples = [E("q1", ["yes", "no"], [0.6, 0.3], ["yes"] * 10), E("q2", ["yes"], [1.0])]
    out = score_task("vqa", {"q1": "no", "q2": "cat"}, examples)
    assert out["score"] == pytest.approx(0.15)
    assert out["vqa_scoring"] == "soft_labels"


def test_gqa_label_dict_exact_match():
    examples = [E("g1", ["left"], [1.0]), E("g2", ["left"], [1.0]), E("g3", ["left"], [1.0])]
    out = score_task("gqa", {"g1": "left", "g2": "right", "g3": "Left"}, examples)  # case-sensitive
    assert out["score"] == pytest.approx(1 / 3) and out["metric"] == "accuracy"


def test_nlvr2_accuracy_and_consistency():
    # sentence test1-0-*-0 has pairs 0 and 1 (one wrong), sentence test1-1-*-1 one pair (right)
    examples = [E("test1-0-0-0", ["true"]), E("test1-0-1-0", ["false"]), E("test1-1-0-1", ["true"])]
    out = score_task("nlvr2", {"test1-0-0-0": "true", "test1-0-1-0": "true", "test1-1-0-1": "true"}, examples)
    assert out["score"] == pytest.approx(2 / 3)
    assert out["consistency"] == pytest.approx(0.5)


def test_nlvr2_consistency_none_for_unparseable_ids():
    out = score_task("nlvr2", {"x": "false"}, [E("x", ["false"])])
    assert out["score"] == 1.0 and out["consistency"] is None and "identifier" in out["consistency_reason"]


@pytest.mark.parametrize("task", ["tvqa", "how2qa"])
def test_video_qa_second_char(task):
    # Test rule (upstream's leaderboard files): "a1." reads as 1 -> right; "zz" falls back to 0 -> wrong here. 3/4.
    examples = [E("v0", ["a0"]), E("v1", ["a3"]), E("v2", ["a1"]), E("v3", ["a1"])]
    out = score_task(task, {"v0": "a0", "v1": "a3", "v2": "zz", "v3": "a1."}, examples)
    assert out["score"] == pytest.approx(0.75) and out["unparseable"] == 1


@pytest.mark.parametrize("task", ["tvqa", "how2qa"])
def test_video_qa_rules_depend_on_the_split(task):
    """Upstream: validation is ``pred == f"a{answer_idx}"`` (TVQAEvaluator), test is ``int(pred[1])`` with 0 when
    that raises (multitask_video.py)."""
    examples = [E("v0", ["a3"]), E("v1", ["a3"]), E("v2", ["a0"]), E("v3", ["a3"]), E("v4", ["a0"])]
    preds = {"v0": "a3 a3", "v1": "a3.", "v2": "xyz", "v3": "a3", "v4": "a\u00b2"}
    val = score_task(task, preds, examples, role="val")
    assert val["score"] == pytest.approx(1 / 5)  # only the exact "a3"
    test = score_task(task, preds, examples, role="test")
    # "a3 a3" -> 3, "a3." -> 3, "xyz" -> 0 (right: a0), "a3" -> 3, "a²" -> int('²') raises -> 0 (right: a0)
    assert test["score"] == pytest.approx(5 / 5)
    assert val["unparseable"] == test["unparseable"] == 2
    # the majority baseline is scored with the same rule
    base = majority_baseline(task, [E("t", ["a3"])], examples, role="val")
    assert base["prediction"] == "a3" and base["score"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("task", ["coco", "tvc", "yc2c"])
def test_caption_scores_perfect_and_wrong(task):
    # Two images, one 4-word reference each, sharing only "a" (df 2 -> idf 0). A perfect prediction has cosine 1
    # for n = 1..4 and no length penalty: 10 * mean(1, 1, 1, 1) = 10.0. Swapping captions overlaps only on
    # "a", whose weight is 0 -> CIDEr 0.0.
    refs = {"i1": ["a red circle left"], "i2": ["a blue square right"]}
    examples = [E(k, v) for k, v in refs.items()]
    perfect = {"i1": "a red circle left", "i2": "a blue square right"}
    swapped = {"i1": "a blue square right", "i2": "a red circle left"}
    good, bad = score_task(task, perfect, examples), score_task(task, swapped, examples)
    assert good["metric"] == "CIDEr"
    assert good["score"] == pytest.approx(10.0) and bad["score"] == pytest.approx(0.0)
    assert good["ROUGE_L"] == pytest.approx(1.0) and good["Bleu_4"] == pytest.approx(1.0)
    assert good["score"] == pytest.approx(cider(perfect, refs))


def test_caption_uses_every_reference():
    refs = {"i1": ["a red circle", "the red circle", "red circle"], "i2": ["a blue square", "blue square"]}
    preds = {"i1": "a red circle", "i2": "a dog"}
    out = score_task("coco", preds, [E(k, v) for k, v in refs.items()])
    expected = caption_scores(preds, refs)
    assert out["score"] == pytest.approx(expected["CIDEr"]) and out["score"] == pytest.approx(cider(preds, refs))
    assert out["Bleu_4"] == pytest.approx(expected["Bleu_4"]) and out["ROUGE_L"] == pytest.approx(expected["ROUGE_L"])


def test_unlabelled_examples_are_skipped_and_counted():
    examples = [E("g1", ["yes"]), E("g2", []), E("g3", [])]
    out = score_task("gqa", {"g1": "yes", "g2": "no", "g3": "no"}, examples)
    assert (out["score"], out["n"], out["unlabelled"]) == (1.0, 1, 2)


def test_all_unlabelled_gives_none_with_reason():
    out = score_task("tvqa", {"t1": "a0"}, [E("t1", [])])
    assert out["score"] is None and out["n"] == 0 and out["unlabelled"] == 1 and "no labelled" in out["reason"]


def test_errors_name_task_and_id():
    with pytest.raises(ValueError, match=r"gqa.*'g2'"):
        score_task("gqa", {"g1": "yes"}, [E("g1", ["yes"]), E("g2", ["no"])])
    with pytest.raises(ValueError, match="unknown task 'vqa2'"):
        score_task("vqa2", {}, [])
    with pytest.raises(ValueError, match=r"nlvr2.*'maybe'"):
        score_task("nlvr2", {"x": "true"}, [E("x", ["maybe"])])
    with pytest.raises(ValueError, match=r"tvqa.*'b2'"):
        score_task("tvqa", {"x": "a2"}, [E("x", ["b2"])])
    with pytest.raises(ValueError, match="duplicate example_id 'x'"):
        score_task("gqa", {"x": "a"}, [E("x", ["a"]), E("x", ["a"])])


def test_majority_vqa():
    # top answers: yes, no, yes -> "yes". Eval: q1 all 10 "yes" -> 1.0; q2 3 "yes" of 10: matching positions
    # 2/3, the 7 others min(1, 3/3) = 1 -> (3 * 2/3 + 7)/10 = 0.9. Mean 0.95.
    train = [E("t1", ["yes", "no"], [1.0, 0.3]), E("t2", ["no"], [1.0]), E("t3", ["yes", "2"], [0.9, 0.6])]
    evals = [E("q1", ["yes"], [1.0], ["yes"] * 10), E("q2", ["no", "yes"], [1.0, 0.9], ["no"] * 7 + ["yes"] * 3)]
    assert majority_prediction("vqa", train) == "yes"
    out = majority_baseline("vqa", train, evals)
    assert out["prediction"] == "yes" and out["score"] == pytest.approx(0.95) and out["n"] == 2


def test_majority_top_target_respects_scores():
    # targets not sorted: the highest score wins ("yes" twice vs "no" once)
    train = [E("1", ["no", "yes"], [0.3, 1.0]), E("2", ["yes"], [1.0]), E("3", ["no"], [1.0])]
    assert majority_prediction("gqa", train) == "yes"


def test_majority_ties_and_other_tasks():
    assert majority_prediction("nlvr2", [E("a", ["true"]), E("b", ["false"])]) == "false"  # tie -> smallest
    out = majority_baseline("nlvr2", [E("a", ["true"]), E("b", ["true"]), E("c", ["false"])],
                            [E("test1-0-0-0", ["true"]), E("test1-0-1-0", ["false"])])
    assert out["prediction"] == "true" and out["score"] == pytest.approx(0.5) and out["consistency"] == 0.0
    tv = majority_baseline("tvqa", [E("a", ["a1"]), E("b", ["a2"]), E("c", ["a1"])],
                           [E("x", ["a1"]), E("y", ["a0"]), E("z", [])])
    assert (tv["prediction"], tv["score"], tv["n"], tv["unlabelled"]) == ("a1", 0.5, 2, 1)
    caps = [E("1", ["A dog. ", "a cat"]), E("2", ["a dog.", "b"]), E("3", [])]
    assert majority_prediction("coco", caps) == "a dog."
    assert majority_prediction("yc2c", [E("1", ["b", "a"])]) == "a"
    with pytest.raises(ValueError, match="gqa: no labelled training examples"):
        majority_prediction("gqa", [E("1", [])])


def test_prediction_spread_flags_a_constant_answer():
    from vlpet.evaluation import prediction_spread

    spread = prediction_spread({"1": "true", "2": "true ", "3": "false", "4": "true"})
    assert spread == {"distinct_predictions": 2, "top_prediction": "true", "top_prediction_share": 0.75}
    assert prediction_spread({str(i): "a0" for i in range(5)})["top_prediction_share"] == 1.0
    assert prediction_spread({}) == {"distinct_predictions": 0, "top_prediction": None, "top_prediction_share": 0.0}
