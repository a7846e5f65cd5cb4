"""Evaluation metrics of VL-PET's tasks, pure Python (no Java, no network): the official VQA v2 accuracy,
GQA/NLVR2/TVQA accuracies, and coco-caption's BLEU-1..4 ("closest"), ROUGE-L and CIDEr-D after a hand-written
PTB tokenisation (coco-caption's ``PTBTokenizer`` needs Java). METEOR and SPICE (Java-only) are not provided.

Public API:
- ``vqa_accuracy(prediction, answers)``, ``vqa_corpus_accuracy(predictions, answers, answer_types=...)``,
  ``normalize_answer``;
- ``gqa_accuracy``, ``nlvr2_accuracy``, ``nlvr2_consistency``, ``tvqa_accuracy``, ``tvqa_accuracy_per_show``;
- ``ptb_tokenize``; ``cider``, ``bleu`` (BLEU-4), ``rouge_l``, the ``*_scores`` variants (per key), and
  ``caption_scores`` (dict with coco-caption's key names).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from vlpet.metrics.accuracy import (
    gqa_accuracy,
    nlvr2_accuracy,
    nlvr2_consistency,
    nlvr2_sentence_key,
    tvqa_accuracy,
    tvqa_accuracy_per_show,
)
from vlpet.metrics.bleu import bleu, bleu_scores
from vlpet.metrics.cider import cider, cider_scores
from vlpet.metrics.ptb import PUNCTUATIONS, ptb_tokenize, tokenize_captions
from vlpet.metrics.rouge import rouge_l, rouge_l_scores
from vlpet.metrics.vqa import normalize_answer, vqa_accuracy, vqa_corpus_accuracy


def caption_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool = True,
    ascii_only: bool = False,
) -> dict[str, float]:
    """``Bleu_1``..``Bleu_4``, ``ROUGE_L`` and ``CIDEr`` as coco-caption names them (toolkit scale)."""
    from vlpet.metrics._common import prepare

    keys, res, gts = prepare(predictions, references, tokenize, ascii_only)
    hyps = {k: res[k] for k in keys}
    out = {f"Bleu_{i + 1}": v for i, v in enumerate(bleu_scores(hyps, gts, tokenize=False)[0])}
    out["ROUGE_L"] = rouge_l(hyps, gts, tokenize=False)
    out["CIDEr"] = cider(hyps, gts, tokenize=False)
    return out


__all__ = [
    "PUNCTUATIONS",
    "bleu",
    "bleu_scores",
    "caption_scores",
    "cider",
    "cider_scores",
    "gqa_accuracy",
    "nlvr2_accuracy",
    "nlvr2_consistency",
    "nlvr2_sentence_key",
    "normalize_answer",
    "ptb_tokenize",
    "rouge_l",
    "rouge_l_scores",
    "tokenize_captions",
    "tvqa_accuracy",
    "tvqa_accuracy_per_show",
    "vqa_accuracy",
    "vqa_corpus_accuracy",
]
