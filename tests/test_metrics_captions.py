"""CIDEr-D / BLEU / ROUGE-L pinned to hand-computed values and the language-evaluation README example."""

from __future__ import annotations

import math
import random

import pytest

from vlpet.metrics import (
    bleu,
    bleu_scores,
    caption_scores,
    cider,
    cider_scores,
    rouge_l,
    rouge_l_scores,
)

LN2 = math.log(2)


def test_language_evaluation_readme_example():
    """bckim92/language-evaluation README: predicts vs answers (one reference each), CocoEvaluator output.

    Every number below is also derived by hand in the comments (the inputs were reconstructed from memory,
    and the derivations confirm them): tokenised refs are "am i a boy" / "is she a girl" ("?" removed).
    """
    predicts = {0: "i am a boy", 1: "she is a girl"}
    answers = {0: ["am i a boy ?"], 1: ["is she a girl ?"]}
    out = caption_scores(predicts, answers)
    # all 8 unigrams match: (8 + 1e-15) / (8 + 1e-9), and the equal lengths still give a (tiny) brevity
    # penalty because ratio = (8 + 1e-15) / (8 + 1e-9) < 1 -> exp(1 - 1/ratio): the toolkit's quirk
    ratio = (8 + 1e-15) / (8 + 1e-9)
    bp = math.exp(1 - 1 / ratio)
    assert out["Bleu_1"] == pytest.approx((8 + 1e-15) / (8 + 1e-9) * bp, rel=1e-15)
    assert out["Bleu_1"] == pytest.approx(0.9999999997500004, rel=1e-15)
    # 1 of 3 bigrams ("a boy" / "a girl") per sentence -> 2/6
    assert out["Bleu_2"] == pytest.approx(math.sqrt(1 / 3), rel=1e-9)
    assert out["Bleu_2"] == pytest.approx(0.5773502690332603, rel=1e-12)
    # no trigram / 4-gram matches: tiny/small smoothing
    b3 = (1.0 * (2 / 6) * (1e-15 / (4 + 1e-9))) ** (1 / 3) * bp
    b4 = (1.0 * (2 / 6) * (1e-15 / (4 + 1e-9)) * (1e-15 / (2 + 1e-9))) ** (1 / 4) * bp
    assert out["Bleu_3"] == pytest.approx(b3, rel=1e-6) == pytest.approx(4.3679023223468616e-06, rel=1e-9)
    assert out["Bleu_4"] == pytest.approx(b4, rel=1e-6) == pytest.approx(1.4287202142987477e-08, rel=1e-9)
    # LCS 3 of 4 tokens both ways -> P = R = 0.75 -> F = 0.75
    assert out["ROUGE_L"] == pytest.approx(0.75, abs=1e-15)
    # CIDEr: "a" has df 2 -> idf 0; unigram cosine 1; bigrams share only "a boy" -> 1/3; n=3,4 -> 0;
    # mean (1 + 1/3) / 4 = 1/3, x10
    assert out["CIDEr"] == pytest.approx(10 / 3, rel=1e-12)
    assert out["CIDEr"] == pytest.approx(3.333333333333333, rel=1e-15)


def test_cider_step_by_step_tiny_corpus():
    """2 images, pre-tokenised. ref_len = ln 2; every reference n-gram has df 1 -> idf weight ln 2.

    image 1: "a cat" vs ["a cat"]: unigram and bigram cosines 1, no 3/4-grams (0) -> 10 * 2/4 = 5.
    image 2: "a dog" vs ["the dog"]: "a" has df 1 (image 1) -> weight ln2, "a dog" df 0 -> log(max(1, 0)) = 0
    -> weight ln2; unigram dot = ln2^2 ("dog"), norms sqrt(2) ln2 each -> 1/2; bigram 0 -> 10 * 0.5/4 = 1.25.
    """
    preds = {"img1": "a cat", "img2": "a dog"}
    refs = {"img1": ["a cat"], "img2": ["the dog"]}
    corpus, per = cider_scores(preds, refs, tokenize=False)
    assert per["img1"] == pytest.approx(5.0, rel=1e-12)
    assert per["img2"] == pytest.approx(1.25, rel=1e-12)
    assert corpus == pytest.approx(3.125, rel=1e-12)
    # the PTB tokenisation makes these captions identical to the pre-tokenised ones
    assert cider({"img1": "A cat.", "img2": "A dog!"}, {"img1": ["a cat"], "img2": ["The dog."]}) == corpus


def test_cider_length_penalty_and_clipping():
    """cand "a b c" vs ref "a b c d e" (image 1) plus a disjoint image 2 to give ln 2 idf weights.

    n=1: dot 3 ln2^2 / (sqrt3 ln2 * sqrt5 ln2) = sqrt(3/5); n=2: 2 / (sqrt2 * 2) = 1/sqrt2; n=3: 1/sqrt3;
    n=4: 0. The toolkit's length is the bigram count: 2 vs 4 -> delta = -2 -> exp(-4 / 72).
    """
    preds = {1: "a b c", 2: "x"}
    refs = {1: ["a b c d e"], 2: ["y"]}
    _, per = cider_scores(preds, refs, tokenize=False)
    expected = 10 * math.exp(-4 / 72) * (math.sqrt(3 / 5) + 1 / math.sqrt(2) + 1 / math.sqrt(3)) / 4
    assert per[1] == pytest.approx(expected, rel=1e-12)
    assert per[2] == 0.0
    # clipping: a repeated candidate n-gram is capped by the reference weight (min(c, r) * r)
    # cand "a a" vs ref "a": unigram c = 2 ln2 -> min = ln2 -> dot ln2^2 / (2 ln2 * ln2) = 1/2;
    # bigram "a a" absent from ref (ref norm 0) -> 0; bigram length 1 vs 0 -> exp(-1/72)
    _, per = cider_scores({1: "a a", 2: "x"}, {1: ["a"], 2: ["y"]}, tokenize=False)
    assert per[1] == pytest.approx(10 * math.exp(-1 / 72) * 0.5 / 4, rel=1e-12)


def test_cider_scale_multi_reference_and_single_image():
    # identical candidate/reference with all n-grams unique to their image: every cosine is 1 -> 10
    preds = {1: "a b c d", 2: "e f g h"}
    assert cider(preds, {1: ["a b c d"], 2: ["e f g h"]}, tokenize=False) == pytest.approx(10.0, rel=1e-12)
    # multi-reference: the similarity is averaged over the references (sum / #refs)
    _, per = cider_scores(preds, {1: ["a b c d", "z z z z"], 2: ["e f g h"]}, tokenize=False)
    # "z z z z" has bigram length 3 like the candidate, shares nothing -> image 1 = (10 + 0) / 2
    assert per[1] == pytest.approx(5.0, rel=1e-12)
    # a one-image corpus has ref_len = log(1) = 0 -> every weight 0 -> 0 (as in coco-caption)
    assert cider({1: "a b"}, {1: ["a b"]}, tokenize=False) == 0.0


def test_cider_order_invariance():
    rng = random.Random(0)
    vocab = "a man dog on the grass red ball sits runs with".split()
    preds, refs = {}, {}
    for i in range(12):
        preds[i] = " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 8)))
        refs[i] = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 8))) for _ in range(rng.randint(1, 5))]
    base = cider(preds, refs)
    keys = list(preds)
    rng.shuffle(keys)
    shuffled = cider({k: preds[k] for k in keys}, {k: list(reversed(refs[k])) for k in keys})
    assert shuffled == pytest.approx(base, rel=1e-12)
    assert 0 < base < 10


def test_bleu_hand_values():
    # no brevity penalty: 5/6, 3/5, 2/4, 1/3 -> (1/12) ** (1/4)
    out, per = bleu_scores({0: "the cat sat on the mat"}, {0: ["the cat sat on a mat"]}, tokenize=False)
    assert out[0] == pytest.approx(5 / 6, rel=1e-8)
    assert out[3] == pytest.approx((1 / 12) ** 0.25, rel=1e-8)
    assert per[0] == pytest.approx(out, rel=1e-12)
    # brevity penalty with the closest reference length (3, not 6): exp(1 - 3/2)
    out, _ = bleu_scores({0: "the cat"}, {0: ["the cat sat", "the cat sat on the mat"]}, tokenize=False)
    assert out[1] == pytest.approx(math.exp(1 - 3 / 2), rel=1e-8)
    # "closest" tie (|3-4| == |5-4|) picks the shorter reference -> ratio 4/3 > 1 -> no penalty
    out, _ = bleu_scores({0: "a b c d"}, {0: ["a b c", "a b c d e"]}, tokenize=False)
    assert out[0] == pytest.approx(1.0, rel=1e-8)
    # BLEU-4 is corpus level: sums of clipped counts, not a mean of sentence scores
    preds = {0: "the cat sat on the mat", 1: "a dog runs on grass today"}
    refs = {0: ["the cat sat on a mat"], 1: ["a dog runs on the grass"]}
    # image 1 counts 5/6 3/5 2/4 1/3; image 2: 5/6, 3/5 (a dog, dog runs, runs on), 2/4, 1/3
    expected = ((10 / 12) * (6 / 10) * (4 / 8) * (2 / 6)) ** 0.25
    assert bleu(preds, refs, tokenize=False) == pytest.approx(expected, rel=1e-8)


def test_rouge_l_hand_values():
    # ref1 LCS "a c d" = 3: P 3/4, R 3/5; ref2 LCS "b d" = 2: P 2/4, R 1 -> P max 3/4, R max 1 (separately)
    score, _ = rouge_l_scores({0: "a b c d"}, {0: ["a c d e f", "b d"]}, tokenize=False)
    p, r, b2 = 0.75, 1.0, 1.2**2
    assert score == pytest.approx((1 + b2) * p * r / (r + b2 * p), rel=1e-12)
    # averaged over images; zero overlap -> 0
    assert rouge_l({0: "a b", 1: "x"}, {0: ["a b"], 1: ["y"]}, tokenize=False) == pytest.approx(0.5)


def test_input_contract():
    with pytest.raises(TypeError):
        cider({0: "a"}, {0: "a"})  # references must be a list, not one string
    with pytest.raises(ValueError):
        cider({0: "a"}, {1: ["a"]})
    with pytest.raises(ValueError):
        bleu({0: "a"}, {0: []})
