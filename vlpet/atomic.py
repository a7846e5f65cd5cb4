"""Atomic file writes: a temp file in the target directory, fsync'ed, then ``os.replace``, so a reader (or a
killed run) never sees half a file. The one implementation of the project's whole-file outputs (JSON, text,
Arrow tables); the feature store's own segment protocol is in ``features.store.layout``. Standard library
only, so ``features`` may import it too."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from vlpet.provenance import json_default


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temp file beside ``path`` (parents created), fsync, then rename into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 ``text`` to ``path``, atomically; returns the path."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """``data`` as JSON (sorted keys; paths as strings, sets sorted) to ``path``, atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=True, default=json_default))
