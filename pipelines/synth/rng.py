"""Independent, named random streams derived from one seed.

Every source draws from its own stream (``stream(seed, "gqa")``), so adding a question to VQA does not
shift every GQA image, and the bytes of one source depend only on the seed and that source's code.
``random.Random`` is used (not ``hash()``-seeded or numpy global state) because its sequences for
``random()``, ``randrange``, ``choice``, ``shuffle`` and ``sample`` are stable across CPython versions.
"""

from __future__ import annotations

import hashlib
import random
import string

_YT_ALPHABET = string.ascii_letters + string.digits + "-_"


def stream(seed: int, name: str) -> random.Random:
    """A generator seeded from ``(seed, name)`` through SHA-256 (stable across processes and platforms)."""
    digest = hashlib.sha256(f"vlpet-synth:{seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def youtube_id(rng: random.Random) -> str:
    """An 11-character YouTube-style id (letters, digits, '-' and '_'), as in How2 / YouCook2 names."""
    return "".join(rng.choice(_YT_ALPHABET) for _ in range(11))


def unique_ints(rng: random.Random, count: int, low: int, high: int, taken: set[int] | None = None) -> list[int]:
    """``count`` distinct integers in ``[low, high)`` not in ``taken`` (which is updated), in draw order."""
    taken = taken if taken is not None else set()
    out: list[int] = []
    while len(out) < count:
        value = rng.randrange(low, high)
        if value not in taken:
            taken.add(value)
            out.append(value)
    return out
