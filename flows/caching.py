"""Content-keyed stage caching: plain functions, no Prefect (the flows are thin wrappers around these).

A stage's **key** is the sha256 of a canonical JSON of (stage name, parameters, input content hashes), where
the inputs include the **code version**: a hash of every ``*.py`` file of the packages the stage runs
(``code_version("features")`` for extraction). Prefect's default task-source hash only sees the decorated
function's own source and would miss a change in a helper module, so it is not relied upon.

A stage's **result** is a JSON-serialisable dict recorded at ``<data_root>/.vlpet/cache/<stage>/<key>.json``
(atomic write: temp file + ``os.replace``). It may list ``outputs`` (``{absolute path: content hash}``);
``StageCache.get`` returns the result only if every listed output still exists with that hash, so deleting
or editing an output re-runs the stage.

Hashing is cheap on re-runs: ``FileHasher`` memoises ``(path, size, mtime_ns) -> sha256`` in a SQLite file
under the cache directory, so an unchanged tree costs one ``stat`` per file; a directory's hash
(``tree_digest``) is the sha256 over its non-hidden files' ``relative path, sha256`` lines.

Typical use (and how ``train``/``evaluate`` can reuse it)::

    cache = StageCache(data_root)
    result, hit = run_cached(cache, "prepare", {"dataset": "coco"},
                             {"raw": cache.hasher.digest(raw_dir)}, lambda: do_work(),
                             packages=("pipelines",))

where ``do_work`` returns a dict, optionally with ``"outputs": [paths]`` (run_cached hashes them).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from features.media import hash_file as sha256_file  # the project's one streamed file hash
from vlpet.atomic import write_json_atomic  # also imported from here by the flows
from vlpet.provenance import canonical_json

CACHE_DIRNAME = ".vlpet"


def vlpet_dir(data_root: str | os.PathLike[str]) -> Path:
    """``<data_root>/.vlpet``: where cache and lineage live (with the data, never in ``$HOME``)."""
    return Path(data_root) / CACHE_DIRNAME


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------- code version


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"code_version: {package!r} is not an importable package")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=64)
def _code_version_cached(packages: tuple[str, ...], stamp: tuple) -> str:
    h = hashlib.sha256()
    for package in packages:
        base = _package_dir(package)
        for p in sorted(base.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            h.update(f"{package}/{p.relative_to(base).as_posix()}\0".encode())
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def code_version(*packages: str) -> str:
    """sha256 over the source of every ``*.py`` file of ``packages`` (sorted paths + bytes).

    ``code_version("features")`` changes when any extraction code changes, helpers included. Memoised per
    process on the files' (path, size, mtime_ns), so calling it per stage costs a few ``stat`` calls."""
    if not packages:
        raise ValueError("code_version needs at least one package name")
    stamp = []
    for package in sorted(set(packages)):
        base = _package_dir(package)
        for p in sorted(base.rglob("*.py")):
            st = p.stat()
            stamp.append((str(p), st.st_size, st.st_mtime_ns))
    return _code_version_cached(tuple(sorted(set(packages))), tuple(stamp))


# ----------------------------------------------------------------------------------------------- file hashing


class FileHasher:
    """sha256 of files memoised by ``(path, size, mtime_ns)`` in SQLite (``<cache>/filehash.sqlite``).

    Safe to share between processes (SQLite locking) and threads (one connection per thread)."""

    def __init__(self, db_path: str | os.PathLike[str] | None) -> None:
        self.db_path = Path(db_path) if db_path else None
        self._local = threading.local()
        if self.db_path is not None:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)

    def _conn(self) -> sqlite3.Connection | None:
        if self.db_path is None:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.db_path), timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                         "mtime_ns INTEGER, sha256 TEXT)")
            self._local.conn = conn
        return conn

    def file(self, path: str | os.PathLike[str]) -> str:
        """The sha256 of one file (from the memo when its size and mtime are unchanged)."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: no such file to hash") from None
        conn = self._conn()
        if conn is not None:
            row = conn.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path = ?", (str(p),)).fetchone()
            if row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns:
                return row[2]
        digest = sha256_file(p)
        if conn is not None:
            conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                         (str(p), st.st_size, st.st_mtime_ns, digest))
        return digest

    def remember(self, path: str | os.PathLike[str], sha256: str) -> None:
        """Seed the memo with a digest computed elsewhere (e.g. by a verified download), saving a re-read."""
        conn = self._conn()
        if conn is None:
            return
        p = Path(path).resolve()
        st = p.stat()
        conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (str(p), st.st_size, st.st_mtime_ns, sha256))

    def tree(self, root: str | os.PathLike[str], *, exclude: Iterable[str] = ()) -> str:
        """A directory's content hash: sha256 over ``rel_path\\tsha256`` lines of its non-hidden files."""
        return tree_digest(root, self, exclude=exclude)

    def digest(self, path: str | os.PathLike[str]) -> str:
        """``file`` for a file, ``tree`` for a directory; a clear error when ``path`` is neither."""
        p = Path(path)
        if p.is_dir():
            return self.tree(p)
        if p.is_file():
            return self.file(p)
        raise FileNotFoundError(f"{p}: no such file or directory to hash")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def tree_digest(root: str | os.PathLike[str], hasher: FileHasher | None = None, *,
                exclude: Iterable[str] = ()) -> str:
    """sha256 over sorted ``relative path, file sha256`` lines of every non-hidden file under ``root``
    (hidden files and folders, e.g. ``.vlpet``, are skipped, as ``features.media.scan_media`` does)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory to hash")
    hasher = hasher or FileHasher(None)
    skip = set(exclude)
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip)
        for name in filenames:
            if name.startswith(".") or name in skip:
                continue
            p = Path(dirpath) / name
            if p.is_file():
                lines.append(f"{p.relative_to(root).as_posix()}\t{hasher.file(p)}")
    lines.sort()
    return sha256_bytes("\n".join(lines).encode())


# ----------------------------------------------------------------------------------------------- keys + cache


def content_key(stage: str, params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """sha256 of the canonical JSON of (stage, params, inputs); ``inputs`` maps names to content hashes
    (include ``"code_version"`` there, e.g. via ``run_cached(..., packages=...)``)."""
    if not stage or "/" in stage or stage.startswith("."):
        raise ValueError(f"stage name {stage!r}: use a non-empty name without '/' and not starting with '.'")
    for name, value in inputs.items():
        if not isinstance(value, str):
            raise TypeError(f"content_key: input {name!r} must be a content hash string, got {value!r}")
    return sha256_bytes(canonical_json({"stage": stage, "params": dict(params), "inputs": dict(inputs)}).encode())


class StageCache:
    """Stage results keyed by ``content_key``, stored as JSON under ``<data_root>/.vlpet/cache``."""

    def __init__(self, data_root: str | os.PathLike[str]) -> None:
        self.data_root = Path(data_root)
        self.dir = vlpet_dir(self.data_root) / "cache"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hasher = FileHasher(self.dir / "filehash.sqlite")

    def path(self, stage: str, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache key {key!r} is not a lowercase hex digest")
        return self.dir / stage / f"{key}.json"

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        """The recorded result, or None when absent, unreadable, or any listed output is gone or changed."""
        path = self.path(stage, key)
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a torn or foreign file is a miss; put() will overwrite it atomically
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("result"), dict):
            return None
        result = entry["result"]
        for out, digest in (result.get("outputs") or {}).items():
            try:
                if self.hasher.digest(out) != digest:
                    return None
            except FileNotFoundError:
                return None
        return result

    def put(self, stage: str, key: str, result: Mapping[str, Any]) -> Path:
        """Record ``result`` (a JSON dict; ``outputs`` must map paths to their content hashes) atomically."""
        result = dict(result)
        outputs = result.get("outputs") or {}
        if not isinstance(outputs, Mapping):
            raise TypeError(f"stage {stage!r}: result['outputs'] must map paths to hashes, got {type(outputs)}")
        return write_json_atomic(self.path(stage, key), {"stage": stage, "key": key, "result": result})

    def hash_outputs(self, paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
        """``{absolute path: content hash}`` of files or directories (what ``put`` wants as ``outputs``)."""
        return {str(Path(p).resolve()): self.hasher.digest(p) for p in paths}


def run_cached(cache: StageCache, stage: str, params: Mapping[str, Any], inputs: Mapping[str, str],
               fn: Callable[[], Mapping[str, Any]], *, packages: Iterable[str] = (),
               force: bool = False) -> tuple[dict[str, Any], bool]:
    """Return ``(result, hit)``: the cached result for (stage, params, inputs, code of ``packages``) when
    still valid, else ``fn()``'s result, recorded. ``fn`` returns a JSON dict; an ``outputs`` entry that
    is a list of paths is replaced by ``{path: content hash}``. ``result["cache_key"]`` names the key."""
    inputs = dict(inputs)
    packages = tuple(packages)
    if packages:
        inputs["code_version"] = code_version(*packages)
    key = content_key(stage, params, inputs)
    if not force:
        found = cache.get(stage, key)
        if found is not None:
            return found, True
    result = dict(fn())
    outputs = result.get("outputs")
    if outputs is not None and not isinstance(outputs, Mapping):
        result["outputs"] = cache.hash_outputs(outputs)
    result["cache_key"] = key
    result["cache_inputs"] = inputs
    cache.put(stage, key, result)
    return result, False
