"""A hand-written stand-in for coco-caption's ``PTBTokenizer`` (Stanford CoreNLP 3.4.1 ``PTBTokenizer``
run with ``-preserveLines -lowerCase``, then coco-caption's removal of ``PUNCTUATIONS``).

Why by hand: the original shells out to Java (``stanford-corenlp-3.4.1.jar``); ``vlpet`` must stay pure
Python with no Java and no network, so the PTB rules that matter for captions are reproduced here:

* lower-casing; ``\\n`` inside a caption becomes a space (coco-caption does this before calling Java);
* punctuation split off as its own token: ``, ; : ! ? ...`` ``--`` and quotes (commas/colons between digits
  stay, as in ``1,000`` / ``10:30``); hyphens inside words stay (``well-known``);
* a word-final period (also the first period of an ellipsis: ``A...`` is ``A.`` then ``..``) stays on the word
  exactly where CoreNLP 3.4.1's ``PTBLexer`` keeps it: its abbreviation lists (``ABBREV1``: ``etc.``, ``Jan.``,
  ``Inc.``, ``Jr.``, ``Calif.``, ...; ``ABBREV2``: ``Mr.``, ``Dr.``, ``St.``, ``vs.``, ...), acronyms
  (``u.s.``, ``a.m.``) and single letters (``A.``), the few case-sensitive entries (``Wash.`` is one, ``wash.``
  is not) included; ``no.``/``fig.``/``ca.`` only before a number; any word before ``.,`` ``.;`` ``.:``. A
  single letter followed by a capitalised sentence starter (``A. The dog``) loses its period (the lexer's
  ``ACRONYM`` rule); that rule reads past the caption into the next one, which ``tokenize_captions`` supplies
  as coco-caption's one-caption-per-line file does. Case is kept for these rules and lowered afterwards, as
  ``-lowerCase`` lowers tokens after lexing;
* parentheses/brackets/braces become ``-LRB- -RRB- -LSB- -RSB- -LCB- -RCB-`` and, because CoreNLP's
  ``-lowerCase`` lower-cases each token *after* lexing (``PTBTokenizer.tokReader``:
  ``str = origStr.toLowerCase(Locale.ENGLISH)``), they come out as ``-lrb- -rrb- ...``, which coco-caption's
  upper-case ``PUNCTUATIONS`` entries never match: the real toolkit KEEPS ``-lrb-``/``-rrb-`` tokens, and so
  does this function by default (``drop_brackets=True`` drops them, i.e. what the list evidently intended);
* ``"`` becomes a quote token (removed);
* PTB contractions and possessives: ``don't -> do n't``, ``can't -> ca n't``, ``it's -> it 's``,
  ``dog's -> dog 's``, ``dogs' -> dogs '``, ``'re 've 'm 'll 'd``; ``cannot gonna gotta wanna gimme lemme``
  are split (``can not``, ``gon na`` ...);
* ``$ # %`` are split off; ``&`` is split off unless between upper-case letters (``AT&T``; ``at&t`` is split);
* finally the tokens in ``PUNCTUATIONS`` (coco-caption's list) are dropped and the rest joined by spaces.

Not reproduced: CoreNLP's ``americanize`` spelling rewrite, ``/``/``*``
escaping (a bijection, so no effect on scores), currency/fraction normalisation, SGML tags, URLs, e-mail
addresses and file names, words the lexer glues across ``?``/``!`` (``what?no``), apostrophes inside glued
words, ``'n'`` split off (``rock'n'roll`` -> ``rock 'n' roll``), and a clitic at the very end of the file
(``couldn't've`` there ends in ``ve``, its quote dropped).
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


def _cased(words: str) -> str:
    """``"Wash|Miss"`` -> a pattern whose first letter must be upper case and the rest any case: the lexer is
    caseless except inside character classes, and these entries are written ``[W]ash``, ``[M]iss``."""
    return "|".join(f"{w[0]}(?i:{w[1:]})" for w in words.split("|"))


# The word lists of CoreNLP 3.4.1's PTBLexer.flex (caseless unless written with _cased).
_ABBREV1 = (  # the period always stays on these
    "(?i:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec|Mon|Tues?|Wed|Thu|Thurs|Fri"
    "|Ala|Ariz|Calif|Colo|Conn|Ct|Dak|Fla|Ga|Ind|Kans?|Ky|Md|Mich|Minn|Mo|Mont|Neb|Nev|Okla|Penn|Tenn|Va|Vt|Wisc?|Wyo"
    "|Inc|Cos?|Corp|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys|tel|est|ext|sq|Jr|Sr|Bros|(?:Ed|Ph)\\.D|Blvd|Rd|Esq"
    "|etc|al|seq|Bldg)|(?i:pp?t)[ye](?i:s)?|" + _cased("Az|Ark|Del|Ill|La|Mass|Miss|Ore|Pa|Tex|Wash"))
_ABBREV2 = (  # titles and the like: the period always stays
    "(?i:Mrs?|Ms|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres"
    "|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc|vs|Alex|Wm|Jos"
    "|Cie|a\\.k\\.a|cf|TREAS|Ph|Invt|Elec|Natl|Dept)|(?i:m)[ft](?i:g)|" + _cased("Miss"))
_ACRONYM = ("[A-Za-z](?:\\.[A-Za-z])+|(?i:Canada|Sino|Korean|EU|Japan|non)-(?i:U\\.S)"
            "|(?i:U\\.S\\.-)(?i:U\\.K|U\\.S\\.S\\.R)")
_ABBREV3 = "(?i:ca|figs?|prop|nos?|art|bldg|pp|op)"  # the period stays before a number only
_SPACENL = "[ \\t\\u00a0\\u2000-\\u200a\\u3000\\r\\n\\u2028\\u2029\\u000b\\u000c\\u0085]"
# A single letter + period before these (then a space) is a letter and a sentence-final period.
_SENTENCE_STARTERS = _cased(
    "About|According|Additionally|After|An|As|At|But|Earlier|He|Her|Here|However|If|In|It|Last|Many|More|Now|Once"
    "|One|Other|Our|She|Since|So|Some|Such|That|The|Their|Then|There|These|They|This|We|When|While|What|Yet|You"
) + "|A|M(?i:r)\\.|M(?i:s)\\."
_WORD = "[A-Za-z][A-Za-z0-9]*(?:\\.[A-Za-z][A-Za-z0-9]*)*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
# Where a lexer token can start: the text's start, a space, or punctuation that is a token of its own.
_START = ("(?:(?<=^)|(?<=[\\s\"`()[\\]{}<>;!?$#%])|(?<=[^0-9][,:])|(?<=^[,:])|(?<=[\\s\"`()[\\]{}<>;!?$#%]')|(?<=^')"
          "|(?<='')"
          "|(?<=[^A-Za-z0-9]-)|(?<=^-)|(?<=\\.\\.))")
_KEPT = "\x00"  # stands for a period that stays on its word until the tokens are formed
_KEEP_PERIOD = re.compile(  # (?<![A-Za-z0-9]) first: a cheap rejection of positions inside words
    f"(?<![A-Za-z0-9]){_START}(?:(?P<always>{_ACRONYM}|{_ABBREV1}|{_ABBREV2})\\.(?![A-Za-z])"
    f"|(?P<letter>[A-Za-z])\\.(?!{_SPACENL}+(?:{_SENTENCE_STARTERS}){_SPACENL}|[A-Za-z])"
    f"|(?P<number>{_ABBREV3})\\.(?={_SPACENL}?\\d)"
    f"|(?P<clause>{_WORD})\\.(?=[,;:]))"
)

_QUOTES = re.compile(r'``|\'\'|"')
# Periods that no word keeps: two are two periods, 3-5 an ellipsis (and so on); so is any run after a kept one.
_DOTS = re.compile(r"\.{2,}|(?<=\x00)\.+")
_ALWAYS = re.compile(r"[;!?$#%]|--")
_NUM_SEP = re.compile(r"(?<!\d)[,:]|[,:](?!\d)")  # , and : not between two digits
_AMP = re.compile(r"(?<![A-Z])&|&(?![A-Z])")  # THINGA keeps "AT&T" (upper case only: "at&t" is 3 tokens)
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
        if len(tok) > 1 and tok[-1] == ".":  # a period the lexer keeps on its word is _KEPT by now
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
            if len(tok) > 1 and tok.endswith("."):  # "no.'s": the period before a clitic is a token too
                middle[:0] = [tok[:-1], "."]
            else:
                middle.insert(0, tok)
            break
    return front + middle + back


def _dot_tokens(match: re.Match[str]) -> str:
    """A run of periods as the lexer cuts it: 3-5 make one ellipsis (longest first), 1-2 are single periods."""
    n, out = len(match.group(0)), []
    while n >= 3:
        out.append("...")
        n -= min(n, 5)
    out.extend(["."] * n)
    return " " + " ".join(out) + " "


def _keep_periods(text: str, following: str | None) -> str:
    """Mark (as ``_KEPT``) each period that stays on its word. ``following``: the text after this caption in
    the lexer's input (coco-caption's next line): a final ``B.`` or ``no.`` looks into it for a sentence
    starter or a number (a look-ahead of a few characters, so its first 40 are enough)."""
    if "." not in text:
        return text
    full = text if following is None else text + "\n" + following[:40]
    return _KEEP_PERIOD.sub(lambda m: m.group(0)[:-1] + _KEPT if m.start() < len(text) else m.group(0),
                            full)[: len(text)]


def _clean(text: str, ascii_only: bool) -> str:
    text = text.replace("\n", " ").replace("\r", " ")
    return _NON_ASCII.sub(" ", text) if ascii_only else text


def ptb_tokens(text: str, ascii_only: bool = False, following: str | None = None) -> list[str]:
    """PTB tokens of one caption (lower-cased, punctuation tokens still present).

    ``following``: the captions after this one in coco-caption's input file (its next line), or None at the
    end of the file; only a single letter's final period can depend on it (see the module docstring)."""
    text = _keep_periods(_clean(text, ascii_only), None if following is None else _clean(following, ascii_only))
    text = _AMP.sub(" & ", text).lower()
    text = _QUOTES.sub(" '' ", text)
    text = _DOTS.sub(_dot_tokens, text)
    text = _ALWAYS.sub(lambda m: f" {m.group(0)} ", text)
    text = _NUM_SEP.sub(lambda m: f" {m.group(0)} ", text)
    for bracket, name in _BRACKETS.items():
        text = text.replace(bracket, f" {name} ")
    out: list[str] = []
    for chunk in text.split():
        out.extend(t.replace(_KEPT, ".") for t in _split_word(chunk))
    return out


def ptb_tokenize(text: str, ascii_only: bool = False, drop_brackets: bool = False,
                 following: str | None = None) -> str:
    """coco-caption tokenisation of one caption: PTB tokens minus ``PUNCTUATIONS``, space-joined.

    ``ascii_only=True`` first replaces non-ASCII characters by spaces (VALUE/TVCaption's evaluation).
    ``drop_brackets=True`` also drops ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`` (the real toolkit keeps them).
    ``following``: the text after this caption in the tokenizer's input (see ``ptb_tokens``).
    """
    drop = _PUNCT_SET | _BRACKET_TOKENS if drop_brackets else _PUNCT_SET
    return " ".join(t for t in ptb_tokens(text, ascii_only, following) if t not in drop)


def tokenize_captions(
    captions: Mapping[Hashable, Sequence[str]], ascii_only: bool = False
) -> dict[Hashable, list[str]]:
    """``PTBTokenizer.tokenize`` on ``{key: [caption, ...]}`` (plain strings instead of ``{"caption": s}``).

    Like coco-caption, the captions are read as one file, one caption per line in dict order, so each caption
    is tokenised with the lines after it as its ``following`` text (the next line suffices: the lexer's
    look-ahead never reaches past a word and a space into it)."""
    flat = [(k, c) for k, caps in captions.items() for c in caps]
    out: dict[Hashable, list[str]] = {k: [] for k in captions}
    for i, (k, c) in enumerate(flat):
        following = None
        if i + 1 < len(flat):
            following = flat[i + 1][1].replace("\n", " ") + ("\n" if i + 2 < len(flat) else "")
        out[k].append(ptb_tokenize(c, ascii_only, following=following))
    return out
