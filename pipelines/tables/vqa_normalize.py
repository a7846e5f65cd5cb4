"""The official VQA answer normalisation (GT-Vision-Lab/VQA ``vqaEval.py``, as copied into VL-T5's
``VQAEvaluator``), ported rule for rule so soft labels and the VQA metric agree on what "same answer" means.

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

from __future__ import annotations

import re

# The official contractions table, verbatim (including its odd entries such as "somebody'd" -> "somebodyd"
# and the capitalised keys that can never match after lowercasing).
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

PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: see the module docstring
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)  # the official code passes re.UNICODE as `count` (= 32)


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: delete or space out punctuation, then strip sentence periods."""
    out = text
    has_digit_comma = COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lowercase, number words to digits, drop articles, fix contractions."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """Full official normalisation of one answer (what ``vqaEval`` applies to a prediction)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
