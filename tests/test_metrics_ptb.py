"""The hand-written PTB tokenisation (coco-caption's PTBTokenizer + PUNCTUATIONS removal)."""

from __future__ import annotations

import pytest

from vlpet.metrics import PUNCTUATIONS, ptb_tokenize
from vlpet.metrics.ptb import ptb_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("don't", "do n't"),
        ("can't", "ca n't"),
        ("won't stop", "wo n't stop"),
        ("it's", "it 's"),
        ("dog's", "dog 's"),
        ("The dogs' toys.", "the dogs toys"),
        ("They're here; we've left, I'm sure.", "they 're here we 've left i 'm sure"),
        ("You'll see what I'd do", "you 'll see what i 'd do"),
        ("I'd've gone, he couldn't've", "i 'd 've gone he could n't 've"),
        ("o'clock rock'n'roll the '90s", "o'clock rock'n'roll the '90s"),
        ("A dog. A cat.", "a dog a cat"),
        ("Wait... what?", "wait what"),
        ('He said "hi"', "he said hi"),
        ("'quoted'", "quoted"),
        ("a well-known man -- really", "a well-known man really"),
        ("1,000 people at 10:30", "1,000 people at 10:30"),
        ("red,blue:green", "red blue green"),
        ("3.5 inches", "3.5 inches"),
        ("the U.S. flag", "the u.s. flag"),
        ("Mr. Smith", "mr. smith"),
        ("I cannot, I'm gonna", "i can not i 'm gon na"),
        ("$5 or 50%", "$ 5 or 50 %"),
        ("at&t and you & me", "at&t and you & me"),
        ("A\nB", "a b"),
        ("  many   spaces  ", "many spaces"),
        ("", ""),
    ],
)
def test_ptb_tokenize(text, expected):
    assert ptb_tokenize(text) == expected


def test_brackets_are_escaped_and_kept_like_the_real_toolkit():
    """CoreNLP lower-cases tokens after escaping, so "-LRB-" leaves Java as "-lrb-", which coco-caption's
    upper-case PUNCTUATIONS entries ("-LRB-", ...) never match: the toolkit keeps them."""
    assert ptb_tokens("(a) [b] {c}") == ["-lrb-", "a", "-rrb-", "-lsb-", "b", "-rsb-", "-lcb-", "c", "-rcb-"]
    assert ptb_tokenize("A man's dog, (running)!") == "a man 's dog -lrb- running -rrb-"
    assert ptb_tokenize("[b] {c}") == "-lsb- b -rsb- -lcb- c -rcb-"
    # what the PUNCTUATIONS list evidently intended (and the example expected), on request
    assert ptb_tokenize("A man's dog, (running)!", drop_brackets=True) == "a man 's dog running"
    assert ptb_tokenize("[b] {c}", drop_brackets=True) == "b c"


def test_ascii_only_for_value_tvc():
    assert ptb_tokenize("caf\u00e9 time", ascii_only=True) == "caf time"
    assert ptb_tokenize("caf\u00e9 time") == "caf\u00e9 time"


def test_punctuation_list_verbatim():
    assert PUNCTUATIONS == (
        "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
        ".", "?", "!", ",", ":", "-", "--", "...", ";",
    )
