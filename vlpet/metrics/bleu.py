"""BLEU-1..4 exactly as coco-caption's ``pycocoevalcap/bleu/bleu_scorer.py`` with ``option="closest"``.

Corpus level: clipped n-gram matches (clip = max count over the references) and guesses summed over all
images; per image the reference length is the closest reference length (ties -> the shorter one); BLEU-n =
``prod_{k<=n}((correct_k + 1e-15) / (guess_k + 1e-9)) ** (1/n)`` times the brevity penalty
``exp(1 - reflen/testlen)`` (computed as ``exp(1 - 1/ratio)``, ``ratio = (testlen + 1e-15) / (reflen + 1e-9)``)
when ``ratio < 1``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

from vlpet.metrics._common import prepare

__all__ = ["bleu", "bleu_scores"]

_SMALL = 1e-9
_TINY = 1e-15


def _precook(s: str, n: int) -> tuple[int, dict]:
    words = s.split()
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return len(words), counts


def _cook(test: str, refs: Sequence[str], n: int) -> dict:
    reflens = []
    maxcounts: dict[tuple[str, ...], int] = {}
    for ref in refs:
        rl, counts = _precook(ref, n)
        reflens.append(rl)
        for ngram, count in counts.items():
            maxcounts[ngram] = max(maxcounts.get(ngram, 0), count)
    testlen, counts = _precook(test, n)
    correct = [0] * n
    for ngram, count in counts.items():
        correct[len(ngram) - 1] += min(maxcounts.get(ngram, 0), count)
    return {
        "testlen": testlen,
        "reflen": min((abs(length - testlen), length) for length in reflens)[1],  # "closest"
        "guess": [max(0, testlen - k + 1) for k in range(1, n + 1)],
        "correct": correct,
    }


def bleu_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    n: int = 4,
    ascii_only: bool = False,
) -> tuple[list[float], dict[Hashable, list[float]]]:
    """([corpus BLEU-1..n], {key: [sentence BLEU-1..n]}) as ``Bleu(4).compute_score`` returns them."""
    keys, res, gts = prepare(predictions, references, tokenize, ascii_only)
    total_test = 0
    total_ref = 0
    guess = [0] * n
    correct = [0] * n
    per: dict[Hashable, list[float]] = {}
    for key in keys:
        comps = _cook(res[key], gts[key], n)
        total_test += comps["testlen"]
        total_ref += comps["reflen"]
        for k in range(n):
            guess[k] += comps["guess"][k]
            correct[k] += comps["correct"][k]
        value = 1.0
        sentence = []
        for k in range(n):
            value *= (float(comps["correct"][k]) + _TINY) / (float(comps["guess"][k]) + _SMALL)
            sentence.append(value ** (1.0 / (k + 1)))
        ratio = (comps["testlen"] + _TINY) / (comps["reflen"] + _SMALL)
        if ratio < 1:
            sentence = [s * math.exp(1 - 1 / ratio) for s in sentence]
        per[key] = sentence
    bleus = []
    value = 1.0
    for k in range(n):
        value *= float(correct[k] + _TINY) / (guess[k] + _SMALL)
        bleus.append(value ** (1.0 / (k + 1)))
    ratio = (total_test + _TINY) / (total_ref + _SMALL)
    if ratio < 1:
        bleus = [b * math.exp(1 - 1 / ratio) for b in bleus]
    return bleus, per


def bleu(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    ascii_only: bool = False,
) -> float:
    """Corpus BLEU-4 (coco-caption ``Bleu_4``, option "closest"), in [0, 1]."""
    return bleu_scores(predictions, references, tokenize, 4, ascii_only)[0][3]
