"""Denoised backbones kept by content, so a retrain does not pre-train the same backbone again.

A random backbone's short denoising pre-training (``vlpet.pretrain``) depends on its text corpus, its
settings and the code, not on the image or video features. A retrain after one changed image (or after a
change of a fine-tuning hyper-parameter) therefore reuses the backbone an earlier run made, instead of
spending tens of seconds making the same one again.

An entry is ``<data_root>/.vlpet/cache/backbones/<key>/`` (the key: ``flows.caching.content_key`` of the
settings, the corpus and the code, made by ``flows.runs``): the backbone directory's files plus
``MANIFEST.json`` (each file's sha256). A copy is checked against the manifest before it is used; an entry
that does not match is dropped and the backbone is made afresh. Entries are written to a temporary
directory and renamed into place, so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from features.media import hash_file

MANIFEST = "MANIFEST.json"
log = logging.getLogger(__name__)


def _digests(directory: Path) -> dict[str, str]:
    return {f.relative_to(directory).as_posix(): hash_file(f)
            for f in sorted(directory.rglob("*")) if f.is_file() and f.name != MANIFEST}


def restore(cache_root: Path, key: str, out: Path) -> bool:
    """Copy entry ``key`` to ``out`` (replacing it) when the entry exists and every copied file matches the
    manifest; False (``out`` untouched) otherwise."""
    entry = cache_root / key
    manifest = entry / MANIFEST
    if not manifest.is_file():
        return False
    tmp = out.with_name(f".{out.name}.restore-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(entry, tmp, ignore=shutil.ignore_patterns(MANIFEST))
    try:
        want = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        want = None
    if _digests(tmp) != want:
        log.warning("%s: the cached backbone does not match its manifest; dropping it and pre-training again",
                    entry)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(entry, ignore_errors=True)
        return False
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return True


def keep(cache_root: Path, key: str, made: Path) -> None:
    """Add the backbone directory ``made`` as entry ``key`` (kept as it is when another process got there first)."""
    entry = cache_root / key
    if entry.is_dir():
        return
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(made, tmp)
    (tmp / MANIFEST).write_text(json.dumps(_digests(tmp), indent=1, sort_keys=True))
    try:
        tmp.rename(entry)
    except OSError:  # another process renamed the same (deterministic) entry into place meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
