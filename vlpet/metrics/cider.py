"""CIDEr-D exactly as coco-caption's ``pycocoevalcap/cider/cider_scorer.py`` (``CiderScorer``) computes it.

Per image: n-gram counts (n = 1..4) of the candidate and of each reference; document frequency = number of
images whose reference set contains the n-gram (from the references given, i.e. the corpus being scored);
``ref_len = log(#images)``; tf-idf weight ``tf * (ref_len - log(max(1, df)))``; per n, the similarity with one
reference is ``sum(min(c, r) * r) / (|c| |r|)`` (candidate clipped by the reference; 0 if a norm is 0) times
the Gaussian length penalty ``exp(-delta^2 / (2 sigma^2))``, sigma = 6, where the toolkit's "length" is the
number of **bigrams** (its ``if n == 1: length += term_freq`` quirk, kept); the image score is
``10 * mean_n(sum_refs sim) / #refs``; the corpus score is the mean over images (toolkit scale, not x100).
Like the toolkit, a one-image corpus has ``ref_len = log 1 = 0`` and scores 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from vlpet.metrics._common import prepare

__all__ = ["cider", "cider_scores", "precook"]


def precook(s: str, n: int = 4) -> dict[tuple[str, ...], int]:
    """n-gram counts of a space-tokenised sentence (``cider_scorer.precook``)."""
    words = s.split()
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def _compute(ctest: list, crefs: list, n: int, sigma: float) -> list[float]:
    document_frequency: dict[tuple[str, ...], float] = defaultdict(float)
    for refs in crefs:
        for ngram in {ngram for ref in refs for ngram in ref}:
            document_frequency[ngram] += 1
    ref_len = np.log(float(len(crefs)))

    def counts2vec(cnts):
        vec = [defaultdict(float) for _ in range(n)]
        length = 0
        norm = [0.0 for _ in range(n)]
        for ngram, term_freq in cnts.items():
            df = np.log(max(1.0, document_frequency.get(ngram, 0.0)))
            i = len(ngram) - 1
            vec[i][ngram] = float(term_freq) * (ref_len - df)
            norm[i] += pow(vec[i][ngram], 2)
            if i == 1:  # sic: coco-caption counts bigrams as the "length"
                length += term_freq
        norm = [np.sqrt(x) for x in norm]
        return vec, norm, length

    def sim(vec_hyp, vec_ref, norm_hyp, norm_ref, length_hyp, length_ref):
        delta = float(length_hyp - length_ref)
        val = np.array([0.0 for _ in range(n)])
        for i in range(n):
            for ngram in vec_hyp[i]:
                val[i] += min(vec_hyp[i][ngram], vec_ref[i].get(ngram, 0.0)) * vec_ref[i].get(ngram, 0.0)
            if (norm_hyp[i] != 0) and (norm_ref[i] != 0):
                val[i] /= norm_hyp[i] * norm_ref[i]
            val[i] *= np.e ** (-(delta**2) / (2 * sigma**2))
        return val

    scores = []
    for test, refs in zip(ctest, crefs, strict=False):
        vec, norm, length = counts2vec(test)
        score = np.array([0.0 for _ in range(n)])
        for ref in refs:
            vec_ref, norm_ref, length_ref = counts2vec(ref)
            score += sim(vec, vec_ref, norm, norm_ref, length, length_ref)
        score_avg = np.mean(score)
        score_avg /= len(refs)
        score_avg *= 10.0
        scores.append(float(score_avg))
    return scores


def cider_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    n: int = 4,
    sigma: float = 6.0,
    ascii_only: bool = False,
) -> tuple[float, dict[Hashable, float]]:
    """(corpus CIDEr-D, per-key CIDEr-D). ``tokenize`` applies the PTB tokenisation first (as
    ``language_evaluation``/coco-caption do); pass ``False`` for already tokenised text."""
    keys, res, gts = prepare(predictions, references, tokenize, ascii_only)
    ctest = [precook(res[k], n) for k in keys]
    crefs = [[precook(r, n) for r in gts[k]] for k in keys]
    per = _compute(ctest, crefs, n, sigma)
    return float(np.mean(np.array(per))), dict(zip(keys, per, strict=False))


def cider(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    n: int = 4,
    sigma: float = 6.0,
    ascii_only: bool = False,
) -> float:
    """Corpus CIDEr-D on coco-caption's scale (e.g. 1.15, not 115). Every prediction is scored against all
    references of its key (so TVC/YC2C multi-reference CIDEr is this function with all refs per clip)."""
    return cider_scores(predictions, references, tokenize, n, sigma, ascii_only)[0]
