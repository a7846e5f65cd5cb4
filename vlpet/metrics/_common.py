"""Shared input handling for the caption metrics (coco-caption's ``{id: [caption]}`` contract)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from vlpet.metrics.ptb import tokenize_captions


def prepare(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenize: bool,
    ascii_only: bool = False,
) -> tuple[list[Hashable], dict[Hashable, str], dict[Hashable, list[str]]]:
    """Check keys/types like coco-caption's asserts and PTB-tokenise (both sides) when asked."""
    if set(predictions) != set(references):
        missing = set(references) ^ set(predictions)
        raise ValueError(f"predictions and references must have the same keys (differ on {len(missing)})")
    if not predictions:
        raise ValueError("no predictions")
    keys = list(predictions)
    res: dict[Hashable, list[str]] = {}
    gts: dict[Hashable, list[str]] = {}
    for k in keys:
        hyp = predictions[k]
        refs = references[k]
        if not isinstance(hyp, str):
            raise TypeError(f"prediction for {k!r} must be one string, got {type(hyp).__name__}")
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise TypeError(f"references for {k!r} must be a sequence of strings")
        if len(refs) == 0:
            raise ValueError(f"no references for {k!r}")
        res[k] = [hyp]
        gts[k] = list(refs)
    if tokenize:
        res = tokenize_captions(res, ascii_only)
        gts = tokenize_captions(gts, ascii_only)
    return keys, {k: v[0] for k, v in res.items()}, gts
