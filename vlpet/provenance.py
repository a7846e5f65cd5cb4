"""What every digest and record is made of: canonical JSON and the versions of the installed libraries.

One implementation for the whole project (feature-store specs and manifests, stage cache keys, lineage
records, checkpoints). Standard library only and nothing of the project, so ``features`` may import it
without pulling in the model code (``tests/test_layering.py`` checks both).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from typing import Any


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace, tuples as lists, paths as strings, sets sorted; NaN and
    other values with no JSON form are errors): the same value always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=json_default)


def json_default(o: Any) -> Any:
    """The JSON form of paths (their text) and sets (sorted lists); anything else without one is an error."""
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"canonical JSON takes JSON values only, not {type(o).__name__}: {o!r}")


def library_versions(packages: Iterable[str]) -> dict[str, str]:
    """``{"python": …, package: version}`` of the installed ``packages`` from package metadata (nothing is
    imported; packages that are not installed are left out)."""
    return dict(_versions(tuple(packages)))


@lru_cache(maxsize=16)
def _versions(packages: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = {"python": platform.python_version()}
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return tuple(out.items())
