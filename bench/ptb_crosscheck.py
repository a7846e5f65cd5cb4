"""vlpet's pure-Python PTB tokenisation against coco-caption's own Java tokenizer, on fuzzed captions.

Why: the tests pin hand-derived cases; this check finds the cases nobody thought of. It needs Java and the
CoreNLP 3.4.1 jar that coco-caption ships (``stanford-corenlp-3.4.1.jar``, inside the ``pycocoevalcap``
package); neither is a dependency of vlpet, so this is a benchmark script, not a test.

The captions are dense in what the lexer treats specially: abbreviations (case-sensitive ones in both cases),
acronyms, single letters, ellipses of every length, ``.,`` ``.;`` ``.:``, brackets, quotes and capitalised
sentence starters (also across caption boundaries, which coco-caption's one-line-per-caption file creates).
``--glue`` is the share of word boundaries without a space (0 = space-separated, as captions are).

    python bench/ptb_crosscheck.py --jar PATH/stanford-corenlp-3.4.1.jar [--images 500] [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlpet.metrics.cider import cider
from vlpet.metrics.ptb import PUNCTUATIONS, tokenize_captions

SPECIAL = ("A I B b c x U.S. u.s. e.g. i.e. A.M. p.m. Ph.D. a.k.a. Mr. Mr mr. Dr. St. Ms. Mrs etc. etc Inc. Co. co "
           "Jan. dec Sept Oct Mar Apr Aug Nov Fri Mon Wed Wash. wash Miss. miss Ill. ill La. la Pa. pa Mo. mo Del del "
           "Tex tex Ore ore Mass mass Ark ark Az az no. No. fig figs ca prop art pp op bldg Alex alex vs Ave ave Gen "
           "Col Rev Pres Jr Sr Bros Rd Blvd Ltd sq est al ext tel Esq cf Wm Jos Cie Dept Mfg mfg MFG Natl Elec Pty "
           "pty PTY Ct Md Ky Va Ga Ind 5 3.5 cat's dogs' don't well-known An About He It You She Once More This The"
           ).split()
COMMON = ("a man woman dog cat sitting on the of in with table next to two people riding horse red blue large "
          "small street holding phone pizza plate white black bus train standing near front field grass water "
          "A Two An The There Some This It He She").split()
AFTER = [".", "..", "...", "....", ".....", "......", ",", ";", ":", "!", "?", ".,", ".;", ".:", "...,", "'", '"',
         "(", ")", "-", "--", ".)", '."', "'s"]


def caption(rng: random.Random, special: float, glue: float) -> str:
    words = []
    for _ in range(rng.randint(1, 8)):
        w = rng.choice(SPECIAL) if rng.random() < special else rng.choice(COMMON)
        if rng.random() < 0.45:
            w += rng.choice(AFTER)
        words.append(w + ("" if rng.random() < glue else " "))
    return "".join(words).strip()


def java_tokenize(jar: Path, caps: dict[int, list[str]]) -> dict[int, list[str]]:
    """coco-caption's ``PTBTokenizer.tokenize``: one file, one caption per line, then PUNCTUATIONS dropped."""
    keys = [k for k, v in caps.items() for _ in v]
    text = "\n".join(c.replace("\n", " ") for v in caps.values() for c in v)
    with tempfile.NamedTemporaryFile("wb", suffix=".txt") as f:
        f.write(text.encode())
        f.flush()
        out = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                              "-lowerCase", f.name], capture_output=True, check=True).stdout.decode()
    res: dict[int, list[str]] = {}
    for k, line in zip(keys, out.split("\n"), strict=False):
        res.setdefault(k, []).append(" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS))
    return res


def corpus_cider(tok: dict[int, list[str]]) -> float:
    """CIDEr-D with each image's first caption as the prediction and the others (or itself) as references."""
    return cider({k: v[0] for k, v in tok.items()}, {k: (v[1:] or v) for k, v in tok.items()}, tokenize=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jar", type=Path, required=True)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--special", type=float, default=1.0, help="share of words drawn from the special list")
    ap.add_argument("--glue", type=float, default=0.0)
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args()
    total = differ = 0
    worst = 0.0
    for seed in args.seeds:
        rng = random.Random(seed)
        caps = {i: [caption(rng, args.special, args.glue) for _ in range(rng.randint(1, 4))]
                for i in range(args.images)}
        ours, java = tokenize_captions(caps), java_tokenize(args.jar, caps)
        bad = [(c, o, j) for k in caps for c, o, j in zip(caps[k], ours[k], java[k], strict=True) if o != j]
        n = sum(len(v) for v in caps.values())
        diff = abs(corpus_cider(ours) - corpus_cider(java))
        total, differ, worst = total + n, differ + len(bad), max(worst, diff)
        print(f"seed {seed}: {len(bad)} of {n} captions tokenise differently; corpus CIDEr-D difference {diff:.2e}")
        for c, o, j in bad[: args.show]:
            print(f"  {c!r}\n    vlpet: {o}\n    java:  {j}")
    print(json.dumps({"captions": total, "differ": differ, "max_cider_diff": worst, "glue": args.glue,
                      "special": args.special}))


if __name__ == "__main__":
    main()
