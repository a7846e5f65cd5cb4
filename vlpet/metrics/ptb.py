"""A hand-written stand-in for coco-caption's ``PTBTokenizer`` (Stanford CoreNLP 3.4.1 ``PTBTokenizer``
run with ``-preserveLines -lowerCase``, then coco-caption's removal of ``PUNCTUATIONS``).

Why by hand: the original shells out to Java (``stanford-corenlp-3.4.1.jar``); ``vlpet`` must stay pure
Python with no Java and no network, so the PTB rules that matter for captions are reproduced here:

* lower-casing; ``\\n`` inside a caption becomes a space (coco-caption does this before calling Java);
* punctuation split off as its own token: ``, ; : ! ? ...`` ``--`` and quotes (commas/colons between digits
  stay, as in ``1,000`` / ``10:30``); a word-final period is split off unless the word is an abbreviation
  (``u.s.``, ``mr.``); hyphens inside words stay (``well-known``);
* parentheses/brackets/braces become ``-LRB- -RRB- -LSB- -RSB- -LCB- -RCB-`` and, because CoreNLP's
  ``-lowerCase`` lower-cases each token *after* lexing (``PTBTokenizer.tokReader``:
  ``str = origStr.toLowerCase(Locale.ENGLISH)``), they come out as ``-lrb- -rrb- ...``, which coco-caption's
  upper-case ``PUNCTUATIONS`` entries never match: the real toolkit KEEPS ``-lrb-``/``-rrb-`` tokens, and so
  does this function by default (``drop_brackets=True`` drops them, i.e. what the list evidently intended);
* ``"`` becomes a quote token (removed);
* PTB contractions and possessives: ``don't -> do n't``, ``can't -> ca n't``, ``it's -> it 's``,
  ``dog's -> dog 's``, ``dogs' -> dogs '``, ``'re 've 'm 'll 'd``; ``cannot gonna gotta wanna gimme lemme``
  are split (``can not``, ``gon na`` ...);
* ``$ # %`` are split off; ``&`` is split off unless inside a word (``at&t``);
* finally the tokens in ``PUNCTUATIONS`` (coco-caption's list) are dropped and the rest joined by spaces.

Not reproduced: CoreNLP's ``americanize`` spelling rewrite, ``/``/``*``
escaping (a bijection, so no effect on scores), currency/fraction normalisation, and its full
abbreviation lexicon.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["PUNCTUATIONS", "ptb_tokenize", "tokenize_captions"]

# coco-caption pycocoevalcap/tokenizer/ptbtokenizer.py, verbatim.
PUNCTUATIONS: tuple[str, ...] = (
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
    ".", "?", "!", ",", ":", "-", "--", "...", ";",
)
_PUNCT_SET = frozenset(PUNCTUATIONS)

# CoreNLP's escapes, already lower-cased as the -lowerCase flag leaves them (see the module docstring).
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_BRACKET_TOKENS = frozenset(_BRACKETS.values())
_CLITICS = ("'s", "'re", "'ve", "'m", "'ll", "'d")
_SPLIT_WORDS = {
    "cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"),
    "wanna": ("wan", "na"), "gimme": ("gim", "me"), "lemme": ("lem", "me"),
}
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "jr.", "sr.", "vs.", "etc.", "inc.", "ltd.", "prof.", "st.", "mt."}
)
_INITIALS = re.compile(r"^(?:[a-z]\.){2,}$")  # u.s. / a.m. / p.m.

_QUOTES = re.compile(r'``|\'\'|"')
_ELLIPSIS = re.compile(r"\.\.\.+")
_ALWAYS = re.compile(r"[;!?$#%]|--")
_NUM_SEP = re.compile(r"(?<!\d)[,:]|[,:](?!\d)")  # , and : not between two digits
_AMP = re.compile(r"(?<![a-z0-9])&|&(?![a-z0-9])")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _split_word(tok: str) -> list[str]:
    """Peel quotes/hyphens/periods off one whitespace-free chunk and split PTB clitics."""
    if tok in _BRACKETS.values() or tok in ("...", "--", "''"):
        return [tok]
    front: list[str] = []
    back: list[str] = []
    changed = True
    while changed and tok:
        changed = False
        # leading quote / backquote / hyphen, but keep clitics ('s) and decade forms ('90s)
        if len(tok) > 1 and tok[0] in "'`-":
            rest = tok[1:]
            if not (tok[0] == "'" and (tok in _CLITICS or rest[:1].isdigit())):
                front.append("`" if tok[0] in "'`" else "-")
                tok = rest
                changed = True
                continue
        if len(tok) > 1 and tok[-1] == ".":
            if not (tok in _ABBREVIATIONS or _INITIALS.match(tok)):
                back.insert(0, ".")
                tok = tok[:-1]
                changed = True
                continue
        if len(tok) > 1 and tok[-1] in "'`-":
            back.insert(0, "'" if tok[-1] in "'`" else "-")
            tok = tok[:-1]
            changed = True
            continue
    middle: list[str] = []
    while tok:  # peel clitics right to left: "couldn't've" -> could n't 've
        if tok in _SPLIT_WORDS:
            middle[:0] = list(_SPLIT_WORDS[tok])
            break
        if len(tok) > 3 and tok.endswith("n't"):
            middle.insert(0, "n't")
            tok = tok[:-3]
            continue
        for clitic in _CLITICS:
            if len(tok) > len(clitic) and tok.endswith(clitic):
                middle.insert(0, clitic)
                tok = tok[: -len(clitic)]
                break
        else:
            middle.insert(0, tok)
            break
    return front + middle + back


def ptb_tokens(text: str, ascii_only: bool = False) -> list[str]:
    """PTB tokens of one caption (lower-cased, punctuation tokens still present)."""
    text = text.replace("\n", " ").replace("\r", " ").lower()
    if ascii_only:
        text = _NON_ASCII.sub(" ", text)
    text = _QUOTES.sub(" '' ", text)
    text = _ELLIPSIS.sub(" ... ", text)
    text = _ALWAYS.sub(lambda m: f" {m.group(0)} ", text)
    text = _NUM_SEP.sub(lambda m: f" {m.group(0)} ", text)
    text = _AMP.sub(" & ", text)
    for bracket, name in _BRACKETS.items():
        text = text.replace(bracket, f" {name} ")
    out: list[str] = []
    for chunk in text.split():
        out.extend(_split_word(chunk))
    return out


def ptb_tokenize(text: str, ascii_only: bool = False, drop_brackets: bool = False) -> str:
    """coco-caption tokenisation of one caption: PTB tokens minus ``PUNCTUATIONS``, space-joined.

    ``ascii_only=True`` first replaces non-ASCII characters by spaces (VALUE/TVCaption's evaluation).
    ``drop_brackets=True`` also drops ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`` (the real toolkit keeps them).
    """
    drop = _PUNCT_SET | _BRACKET_TOKENS if drop_brackets else _PUNCT_SET
    return " ".join(t for t in ptb_tokens(text, ascii_only) if t not in drop)


def tokenize_captions(
    captions: Mapping[Hashable, Sequence[str]], ascii_only: bool = False
) -> dict[Hashable, list[str]]:
    """``PTBTokenizer.tokenize`` on ``{key: [caption, ...]}`` (plain strings instead of ``{"caption": s}``)."""
    return {k: [ptb_tokenize(c, ascii_only) for c in caps] for k, caps in captions.items()}
