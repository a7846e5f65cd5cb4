"""ROUGE-L exactly as coco-caption's ``pycocoevalcap/rouge/rouge.py``.

Per image: LCS (token level, tokens = ``split(" ")``) of the candidate with each reference; precision
``lcs/len(cand)`` and recall ``lcs/len(ref)`` are maximised over the references **separately**; score
``(1 + b^2) P R / (R + b^2 P)`` with b = 1.2 (0 if P or R is 0); corpus score = mean over images.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from vlpet.metrics._common import prepare

__all__ = ["lcs_length", "rouge_l", "rouge_l_scores"]

BETA = 1.2


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[len(b)]


def _calc(candidate: str, refs: Sequence[str], beta: float) -> float:
    prec, rec = [], []
    token_c = candidate.split(" ")
    for reference in refs:
        token_r = reference.split(" ")
        lcs = lcs_length(token_r, token_c)
        prec.append(lcs / float(len(token_c)))
        rec.append(lcs / float(len(token_r)))
    prec_max, rec_max = max(prec), max(rec)
    if prec_max != 0 and rec_max != 0:
        return ((1 + beta**2) * prec_max * rec_max) / float(rec_max + beta**2 * prec_max)
    return 0.0


def rouge_l_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    beta: float = BETA,
    ascii_only: bool = False,
) -> tuple[float, dict[Hashable, float]]:
    """(corpus ROUGE-L, per-key ROUGE-L)."""
    keys, res, gts = prepare(predictions, references, tokenize, ascii_only)
    per = {k: _calc(res[k], gts[k], beta) for k in keys}
    return float(np.mean(np.array([per[k] for k in keys]))), per


def rouge_l(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    ascii_only: bool = False,
) -> float:
    """Corpus ROUGE-L (coco-caption ``ROUGE_L``), in [0, 1]."""
    return rouge_l_scores(predictions, references, tokenize, BETA, ascii_only)[0]
