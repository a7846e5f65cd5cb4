"""The official VQA answer normalisation (GT-Vision-Lab/VQA ``vqaEval.py``, as copied into VL-T5's
``VQAEvaluator``), used for the soft labels. The one implementation lives in ``vlpet.metrics.vqa``
(the metric needs it and ``vlpet`` may not import ``pipelines``); this module re-exports it, so soft
labels and the metric agree on what "same answer" means.

Rules, in the order the official code applies them to a prediction:
1. ``\\n`` and ``\\t`` become spaces, then the text is stripped;
2. ``process_punctuation``: for each character of ``PUNCT`` (``'`` ``:`` and ``.`` are NOT in it) -
   if that character is followed or preceded by a space anywhere in the *original* text, or the
   original text contains a digit-comma-digit pattern (``1,000``), every occurrence is deleted;
   otherwise every occurrence is replaced by a space. Then periods not followed by a digit are removed
   (the official regex ``(?!<=\\d)(\\.)(?!\\d)`` has a typo: ``(?!<=\\d)`` is a look-*ahead* for the
   characters ``<=digit``, so only "not followed by a digit" has an effect; and the official call passes
   ``re.UNICODE`` (= 32) as ``count``, so at most 32 periods are removed. Both quirks are kept.);
3. ``process_digit_article``: lowercase, split on whitespace; number words ``none``/``zero``..``ten`` become
   digits; the articles ``a``/``an``/``the`` are dropped; apostrophe-less contractions are restored
   (``dont`` -> ``don't``); words are re-joined with single spaces.

The official evaluation applies all of this to predictions, but only step 2 to ground-truth answers,
and only when the 10 answers are not all identical (see ``vlpet`` metrics). Soft labels (LXMERT /
bottom-up-attention ``compute_softscore.py``) apply the full normalisation to every annotator answer.
"""

from vlpet.metrics.vqa import (
    ARTICLES,
    CONTRACTIONS,
    MANUAL_MAP,
    PUNCT,
    normalize_answer,
    process_digit_article,
    process_punctuation,
)

__all__ = ["ARTICLES", "CONTRACTIONS", "MANUAL_MAP", "PUNCT", "normalize_answer", "process_digit_article",
           "process_punctuation"]
