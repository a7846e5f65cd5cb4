"""Official weights from the Hugging Face hub: downloaded once into the standard cache, verified, named.

``huggingface_hub`` does the transfer and the cache: ``HF_ENDPOINT``, ``HF_TOKEN``, its progress bar, retries
that resume with ``Range``, ``.incomplete`` files renamed only when complete, the ``HF_HOME``/``HF_HUB_CACHE``
layout, and ``HF_HUB_OFFLINE=1`` answering from the cache alone. What it does not do is check the bytes
against the hash the hub publishes: an LFS file's ETag is its sha256 (the blob's name in the cache), so
``hub_file`` hashes every file it hands out and refuses, and removes, one whose bytes do not match.

Every failure to obtain a file (offline and not cached, the server unreachable or refusing, a bad download)
is a :class:`WeightsUnavailableError` whose message names the repo and file, the cache folder searched and the
ways forward; callers turn it into a clean non-zero exit before they write anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Weights = Literal["official", "random"]
WEIGHTS_CHOICES: tuple[str, ...] = ("official", "random")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class WeightsUnavailableError(RuntimeError):
    """Official weights could not be obtained (offline and not cached, download failed, or corrupt)."""


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repo as it sits in the local cache, and which exact bytes it is."""

    repo_id: str
    filename: str
    revision: str  # the commit the file was resolved to
    sha256: str
    size: int
    path: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_weights(weights: str) -> Weights:
    """``weights`` if it is one of ``official`` / ``random``, else a ValueError naming the choices."""
    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f"weights={weights!r}: choose one of {', '.join(WEIGHTS_CHOICES)}")
    return weights  # type: ignore[return-value]


def cache_dir() -> str:
    """The hub cache folder huggingface_hub reads and writes (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def sha256_of(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """sha256 of a file, streamed; memoised per (path, size, mtime) within the process (weights files are
    hundreds of MB and are hashed when fetched and again when loaded)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    digest = h.hexdigest()
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest
    return digest


def unavailable_message(repo_id: str, filename: str, reason: str, *, fetch_name: str, alternative: str,
                        cache: str | os.PathLike[str] | None = None) -> str:
    """The one message for weights that are not here: what is missing, where we looked, the two ways forward."""
    return (f"official weights {repo_id} (file {filename}) are not available: {reason}. "
            f"Hugging Face cache searched: {cache or cache_dir()} (set by HF_HOME / HF_HUB_CACHE). "
            f"Either fetch them on a machine with internet access, `vlpet weights fetch {fetch_name}` (then copy "
            f"that cache folder here, or point HF_HOME at it), or pass {alternative}.")


def _commit_of(path: Path, fallback: str) -> str:
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return fallback


def cached_file(repo_id: str, filename: str, revision: str = "main") -> str | None:
    """The path of a file already in the hub cache, without any network access (None when not cached)."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename, revision=revision)
    return hit if isinstance(hit, str) else None


def _verified(path: Path, repo_id: str, filename: str) -> str:
    """sha256 of the cached file, checked against the blob's name when that is a sha256 (the LFS ETag)."""
    blob = path.resolve()
    digest = sha256_of(blob)
    if _SHA256.fullmatch(blob.name) and blob.name != digest:
        for p in (path, blob):
            p.unlink(missing_ok=True)
        raise WeightsUnavailableError(
            f"{repo_id} (file {filename}): the downloaded bytes have sha256 {digest}, but the hub published "
            f"{blob.name}; the file was removed from the cache ({cache_dir()}). Download it again "
            f"(`vlpet weights fetch`); if this repeats, the mirror behind HF_ENDPOINT serves corrupt data")
    return digest


def hub_file(repo_id: str, filename: str, *, revision: str = "main", required: bool = True,
             fetch_name: str = "", alternative: str = "a local file",
             cache: str | os.PathLike[str] | None = None) -> HubFile | None:
    """The cached (downloaded on first use) and verified ``filename`` of ``repo_id`` at ``revision``.

    ``required=False``: None when the repo has no such file (a 404 for that entry), or when it cannot be had
    (offline and not cached), instead of an error.
    ``cache``: another hub cache folder than huggingface_hub's default.
    Raises :class:`WeightsUnavailableError` for everything else that keeps the file away."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    def fail(reason: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(unavailable_message(repo_id, filename, reason, fetch_name=fetch_name or repo_id,
                                                           alternative=alternative, cache=cache))

    try:
        local = Path(hf_hub_download(repo_id, filename, revision=revision,
                                     cache_dir=os.fspath(cache) if cache is not None else None))
    except LocalEntryNotFoundError as e:  # (a subclass of EntryNotFoundError: first)
        if not required:  # an optional file not here (or known not to exist: the cache's .no_exist marker)
            return None
        why = "HF_HUB_OFFLINE is set and they are not in the cache" if offline() else (
            "they are not in the cache and the hub could not be reached")
        raise fail(why) from e
    except EntryNotFoundError as e:
        if not required:
            return None
        raise fail("the hub has no such file in that repo") from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise fail(f"the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    return HubFile(repo_id, filename, _commit_of(local, revision), _verified(local, repo_id, filename),
                   local.stat().st_size, str(local))
