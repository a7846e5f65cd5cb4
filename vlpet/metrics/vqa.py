"""Official VQA v2 accuracy (GT-Vision-Lab/VQA ``vqaEval.py``, as reproduced in VL-T5's ``VQAEvaluator``).

The normalisation rules are reproduced rule for rule (``vlpet`` may not import ``pipelines``; the same rules
also live in ``pipelines/tables/vqa_normalize.py`` and ``tests/test_metrics_vqa.py`` asserts both agree):

1. ``\\n`` and ``\\t`` become spaces, then the text is stripped (prediction only);
2. ``process_punctuation``: for each character of ``PUNCT`` (``'`` ``:`` ``.`` are NOT in it) - if it touches
   a space anywhere in the original text, or the original text has a digit-comma-digit pattern, every
   occurrence is deleted, otherwise replaced by a space; then periods not followed by a digit are removed
   (official regex typo ``(?!<=\\d)`` kept, and ``re.UNICODE`` (= 32) passed as ``count`` kept: at most 32);
3. ``process_digit_article``: lowercase, split on whitespace, number words none/zero..ten -> digits, drop
   a/an/the, restore apostrophe-less contractions, join with single spaces.

The prediction always gets 1-3. The ground-truth answers get only step 2, and only when they are not all
identical (VL-T5's version; a later GT-Vision-Lab variant normalises both only when GTs disagree).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

__all__ = [
    "normalize_answer",
    "process_digit_article",
    "process_punctuation",
    "vqa_accuracy",
    "vqa_corpus_accuracy",
]

# The official contractions table, verbatim (odd entries and unreachable capitalised keys included).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}

MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

PUNCT: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)

PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: the official typo, see the module docstring
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)  # the official call passes re.UNICODE (= 32) as `count`


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``."""
    out = text
    has_digit_comma = COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """The full normalisation the official evaluation applies to a prediction."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against its (normally 10) ground-truth answers, in [0, 1].

    Mean over each GT answer i of ``min(1, #{j != i : gt_j == prediction} / 3)`` (the official leave-one-out;
    annotator answers are distinct records, so "other" means other positions, not other strings).
    """
    answers = list(answers)
    if not answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer")
    pred = normalize_answer(prediction)
    if len(set(answers)) > 1:
        answers = [process_punctuation(a) for a in answers]
    matches = [a == pred for a in answers]
    total = sum(matches)
    accs = [min(1.0, float(total - m) / 3) for m in matches]
    return float(sum(accs)) / len(accs)


def vqa_corpus_accuracy(
    predictions: Mapping[Hashable, str],
    answers: Mapping[Hashable, Sequence[str]],
    answer_types: Mapping[Hashable, str] | None = None,
    question_types: Mapping[Hashable, str] | None = None,
    ndigits: int = 2,
) -> dict:
    """Official ``vqaEval.evaluate`` summary over the questions of ``predictions``.

    Returns ``{"overall": x, "perAnswerType": {...}, "perQuestionType": {...}}`` with every value
    ``round(100 * mean, ndigits)`` as in ``setAccuracy`` (per-type dicts are empty when no types are given).
    """
    if not predictions:
        raise ValueError("no predictions")
    accs: list[float] = []
    by_atype: dict[str, list[float]] = defaultdict(list)
    by_qtype: dict[str, list[float]] = defaultdict(list)
    for qid, pred in predictions.items():
        acc = vqa_accuracy(pred, answers[qid])
        accs.append(acc)
        if answer_types is not None:
            by_atype[answer_types[qid]].append(acc)
        if question_types is not None:
            by_qtype[question_types[qid]].append(acc)

    def pct(values: list[float]) -> float:
        return round(100 * float(sum(values)) / len(values), ndigits)

    return {
        "overall": pct(accs),
        "perAnswerType": {k: pct(v) for k, v in by_atype.items()},
        "perQuestionType": {k: pct(v) for k, v in by_qtype.items()},
    }
