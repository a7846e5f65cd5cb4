"""Verified, resumable downloads over HTTP(S) and ``file://``.

Dataset archives are large and mirrors are flaky, so a download must survive dropped connections without
starting over, must never leave a half-written or unverified file at its destination, and must cost
nothing when the verified file is already there. The bytes go to ``<dest>.part`` first; only a file
that passed the size/checksum checks is renamed onto ``dest`` (``os.replace``, atomic on one filesystem).

* An interrupted transfer (dropped connection, timeout) resumes with ``Range: bytes=N-``. A server that
  ignores ``Range`` (answers 200) is handled by rewriting the ``.part`` from byte 0.
* Timeouts, connection errors, 5xx, 408, 425 and 429 are retried with exponential backoff; any other
  4xx raises :class:`DownloadError` at once (retrying a 404 only wastes time).
* A checksum or size mismatch deletes the file and downloads it once more from zero; a second mismatch
  raises :class:`ChecksumError` and leaves no file behind.
* A ``.part`` left by a killed run is resumed by the next call.

``file://`` URLs (local or mounted mirrors) get the same ``.part``/verify/rename treatment.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from tqdm import tqdm

__all__ = [
    "ChecksumError",
    "DownloadError",
    "DownloadItem",
    "DownloadManyError",
    "DownloadResult",
    "download",
    "download_many",
    "part_path",
]

_log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_MAX_SLEEP = 30.0
# Worth retrying although they are 4xx: the server asks us to come back later.
_RETRY_4XX = frozenset({408, 425, 429})
# The transport errors that mean "try again"; anything else from httpx (bad URL, redirect loop) will not
# get better by waiting.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_HEX = re.compile(r"[0-9a-f]+")


class DownloadError(RuntimeError):
    """A download failed for good; the message names the URL and what went wrong."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or digest, even after one fresh download."""

    def __init__(self, message: str, *, url: str, check: str, expected: str, actual: str) -> None:
        super().__init__(message, url=url)
        self.check = check
        self.expected = expected
        self.actual = actual


class DownloadManyError(DownloadError):
    """Some items of :func:`download_many` failed; the others completed and are in ``results``."""

    def __init__(
        self,
        message: str,
        *,
        failures: list[tuple[DownloadItem, BaseException]],
        results: list[DownloadResult | None],
    ) -> None:
        super().__init__(message, url=failures[0][0].url)
        self.failures = failures
        self.results = results


@dataclass(frozen=True)
class DownloadItem:
    """One file for :func:`download_many`; the checks mean the same as in :func:`download`."""

    url: str
    dest: Path
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DownloadResult:
    """What one :func:`download` call did, so callers and tests can tell a resume from a full fetch."""

    url: str
    path: Path
    size: int
    sha256: str
    bytes_downloaded: int  # payload bytes received by this call, including any that were later discarded
    skipped: bool  # dest already verified: no request was made
    resumed: bool  # this call appended to a partial file instead of starting from zero
    attempts: int  # requests (or local copies) tried, retries included; 0 when skipped


@dataclass(frozen=True)
class _Expected:
    sha256: str | None
    md5: str | None
    size: int | None

    @property
    def any(self) -> bool:
        return self.sha256 is not None or self.md5 is not None or self.size is not None


@dataclass
class _Progress:
    """Counters shared by all attempts of one call."""

    bar: tqdm
    attempts: int = 0
    bytes_downloaded: int = 0
    resumed: bool = False


class _Retry(Exception):
    """An attempt failed in a way that waiting and trying again can fix."""


def part_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` are collected before verification: ``<dest>.part`` next to it."""
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    client: httpx.Client | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 30.0,
    progress: bool = True,
) -> DownloadResult:
    """Fetch ``url`` to ``dest``, verified against whichever of ``sha256``/``md5``/``size`` are given.

    If ``dest`` already matches them, nothing is fetched (``skipped``). With no checks given, an existing
    ``dest`` is trusted because it can only have been put there by a completed download (atomic rename).
    ``retries`` is the number of extra attempts after the first one; the sleep before retry ``k`` is
    ``backoff * 2**(k-1)`` seconds (capped at 30). ``client`` lets callers share a connection pool.
    """
    dest = Path(dest)
    expected = _expected(url, sha256, md5, size)
    _check_knobs(retries=retries, backoff=backoff, timeout=timeout)
    fetch_kind = _scheme(url)

    if dest.is_file():
        digest, problems = _verify(dest, expected)
        if not problems:
            return DownloadResult(url, dest, dest.stat().st_size, digest, 0, True, False, 0)
        dest.unlink()  # known bad: never leave it looking like a finished download

    source = _local_path(url) if fetch_kind == "file" else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    own_client = client is None and source is None
    http = httpx.Client(follow_redirects=True, timeout=timeout) if own_client else client
    bar = tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=False)
    state = _Progress(bar=bar)
    attempt: Callable[[], None]
    if source is not None:
        attempt = partial(_copy_local, url, source, part, expected, state)
    else:
        attempt = partial(_fetch_http, http, url, part, expected, timeout, state)
    try:
        digest = _fetch_verified(url, attempt, part, expected, retries=retries, backoff=backoff, state=state)
        os.replace(part, dest)
        return DownloadResult(
            url, dest, dest.stat().st_size, digest, state.bytes_downloaded, False, state.resumed, state.attempts
        )
    finally:
        bar.close()
        if own_client and http is not None:
            http.close()


def download_many(
    items: Sequence[DownloadItem],
    *,
    max_concurrency: int = 4,
    client: httpx.Client | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 30.0,
    progress: bool = True,
) -> list[DownloadResult]:
    """Run :func:`download` for every item with at most ``max_concurrency`` transfers at a time.

    Results come back in the order of ``items``. All items are attempted even when some fail; then one
    :class:`DownloadManyError` lists every failure. Items are checked up front so a typo in the last
    checksum fails before anything is fetched.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    _check_knobs(retries=retries, backoff=backoff, timeout=timeout)
    _check_items(items)
    own_client = client is None
    if client is None:
        limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        client = httpx.Client(follow_redirects=True, timeout=timeout, limits=limits)
    shared: httpx.Client = client

    def one(item: DownloadItem) -> DownloadResult:
        return download(
            item.url, Path(item.dest), sha256=item.sha256, md5=item.md5, size=item.size, client=shared,
            retries=retries, backoff=backoff, timeout=timeout, progress=False,
        )

    results: list[DownloadResult | None] = [None] * len(items)
    failures: list[tuple[DownloadItem, BaseException]] = []
    try:
        with (
            ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="download") as pool,
            tqdm(total=len(items), desc="downloads", unit="file", disable=not progress) as bar,
        ):
            futures = [pool.submit(one, item) for item in items]
            for index, (item, future) in enumerate(zip(items, futures, strict=True)):
                try:
                    results[index] = future.result()
                except Exception as exc:  # collected and re-raised below, with every other failure
                    failures.append((item, exc))
                bar.update(1)
    finally:
        if own_client:
            shared.close()
    if failures:
        lines = "\n".join(f"  {item.url}: {exc}" for item, exc in failures)
        raise DownloadManyError(
            f"{len(failures)} of {len(items)} downloads failed:\n{lines}", failures=failures, results=results
        ) from failures[0][1]
    return [result for result in results if result is not None]


def _fetch_verified(url: str, attempt: Callable[[], None], part: Path, expected: _Expected, *, retries: int,
                    backoff: float, state: _Progress) -> str:
    """Run ``attempt`` (with retries) until ``part`` holds verified bytes; returns their digest.

    One fresh re-download after a mismatch: a corrupted transfer or a stale .part from another version of the
    file deserves a second chance, a wrong expected checksum does not deserve more."""
    def fetch_and_verify() -> tuple[str, list[tuple[str, str, str]]]:
        _with_retries(url, attempt, retries=retries, backoff=backoff, state=state)
        digest, problems = _verify(part, expected)
        if problems:
            part.unlink()
        return digest, problems

    digest, problems = fetch_and_verify()
    if problems:
        _log.warning("%s: %s mismatch; downloading it once more from scratch", url, problems[0][0])
        digest, problems = fetch_and_verify()
        if problems:
            raise _checksum_error(url, problems)
    return digest


def _check_items(items: Sequence[DownloadItem]) -> None:
    """Every item's checksums and scheme, and distinct destinations, before anything is fetched."""
    seen: dict[Path, str] = {}
    for item in items:
        _expected(item.url, item.sha256, item.md5, item.size)
        _scheme(item.url)
        key = Path(item.dest).resolve()
        if key in seen:  # two threads writing one .part would corrupt it
            raise ValueError(f"two items download to the same dest {item.dest}: {seen[key]} and {item.url}")
        seen[key] = item.url


# --- checks -------------------------------------------------------------------------------------------


def _expected(url: str, sha256: str | None, md5: str | None, size: int | None) -> _Expected:
    return _Expected(_digest(url, "sha256", sha256, 64), _digest(url, "md5", md5, 32), _size(url, size))


def _digest(url: str, name: str, value: str | None, length: int) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if len(text) != length or not _HEX.fullmatch(text):
        raise ValueError(f"{url}: {name} must be {length} hex characters, got {value!r}")
    return text


def _size(url: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{url}: size must be a non-negative int (bytes), got {value!r}")
    return value


def _checksum_error(url: str, problems: list[tuple[str, str, str]]) -> ChecksumError:
    details = "; ".join(f"{check}: expected {want}, got {got}" for check, want, got in problems)
    check, want, got = next((p for p in problems if p[0] != "size"), problems[0])
    return ChecksumError(
        f"{url}: downloaded file does not match after a fresh re-download ({details}); file discarded, "
        "check the expected checksum or the mirror",
        url=url, check=check, expected=want, actual=got,
    )


def _check_knobs(*, retries: int, backoff: float, timeout: float) -> None:
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if backoff < 0:
        raise ValueError(f"backoff must be >= 0 seconds, got {backoff}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "file":
        return "file"
    raise ValueError(f"{url}: unsupported URL scheme {scheme!r}; use http://, https:// or file://")


def _verify(path: Path, expected: _Expected) -> tuple[str, list[tuple[str, str, str]]]:
    """sha256 of ``path`` plus every failed check as (check, expected, actual)."""
    problems: list[tuple[str, str, str]] = []
    actual_size = path.stat().st_size
    if expected.size is not None and actual_size != expected.size:
        problems.append(("size", f"{expected.size} bytes", f"{actual_size} bytes"))
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if expected.md5 is not None else None
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
    digest = sha.hexdigest()
    if expected.sha256 is not None and digest != expected.sha256:
        problems.append(("sha256", expected.sha256, digest))
    if md5 is not None and md5.hexdigest() != expected.md5:
        problems.append(("md5", str(expected.md5), md5.hexdigest()))
    return digest, problems


# --- attempts -----------------------------------------------------------------------------------------


def _with_retries(url: str, attempt: Callable[[], None], *, retries: int, backoff: float, state: _Progress) -> None:
    # Written by hand rather than with a retry library: each retry must re-read how much of the .part
    # survived and the resume/restart decision lives inside the attempt, so the loop itself is tiny.
    failures = 0
    while True:
        state.attempts += 1
        try:
            attempt()
            return
        except (_Retry, *_TRANSIENT) as exc:
            failures += 1
            reason = str(exc) if isinstance(exc, _Retry) else f"{type(exc).__name__}: {exc}"
            if failures > retries:
                raise DownloadError(
                    f"{url}: giving up after {failures} failed attempts; last error: {reason}", url=url
                ) from exc
            delay = min(backoff * 2 ** (failures - 1), _MAX_SLEEP)
            _log.warning("%s: attempt %d failed (%s); retrying in %.2fs", url, state.attempts, reason, delay)
            time.sleep(delay)
        except httpx.HTTPError as exc:
            raise DownloadError(f"{url}: {type(exc).__name__}: {exc}", url=url) from exc


def _start_offset(part: Path, expected: _Expected) -> int:
    """Bytes already in ``part`` worth keeping (0 when there is none or it is longer than the file)."""
    offset = part.stat().st_size if part.exists() else 0
    if expected.size is not None and offset > expected.size:
        part.unlink()
        return 0
    return offset


def _fetch_http(
    client: httpx.Client | None, url: str, part: Path, expected: _Expected, timeout: float, state: _Progress
) -> None:
    assert client is not None
    offset = _start_offset(part, expected)
    if offset and offset == expected.size:
        return  # a killed run got every byte but died before verifying; verification decides
    # identity: Range offsets count encoded bytes, and we want the file exactly as served.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with client.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
        status = response.status_code
        if status == 416 and offset:
            if _content_range_total(response.headers.get("Content-Range")) == offset:
                return  # the .part already holds the whole file
            part.unlink()
            raise _Retry(f"server refused to resume at byte {offset} (HTTP 416); restarting from zero")
        if status >= 500 or status in _RETRY_4XX:
            raise _Retry(f"HTTP {status} {response.reason_phrase}")
        if status >= 400:
            raise DownloadError(
                f"{url}: HTTP {status} {response.reason_phrase} (client error, not retried)", url=url, status=status
            )
        if status == 206 and offset:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Retry(f"asked to resume at byte {offset} but the server sent bytes from {start}; restarting")
            mode = "ab"
            state.resumed = True
        elif status == 200:
            mode, offset = "wb", 0  # a full body: either a fresh start or a server that ignores Range
        else:
            raise DownloadError(f"{url}: unexpected HTTP {status} {response.reason_phrase}", url=url, status=status)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else expected.size
        state.bar.reset(total=total)
        state.bar.update(offset)
        with open(part, mode) as f:
            try:
                # iter_raw() without a chunk size: every byte received is written before an error can
                # surface, so the .part holds all of it for the resume.
                for chunk in response.iter_raw():
                    f.write(chunk)
                    state.bytes_downloaded += len(chunk)
                    state.bar.update(len(chunk))
            finally:
                f.flush()
                os.fsync(f.fileno())


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match[1]) if match else None


def _content_range_total(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(?:\*|\d+-\d+)/(\d+)\s*", value or "")
    return int(match[1]) if match else None


def _local_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{url}: file:// URLs must name a local path (file:///abs/path), not host {parts.netloc!r}")
    return Path(url2pathname(parts.path))


def _copy_local(url: str, source: Path, part: Path, expected: _Expected, state: _Progress) -> None:
    try:
        src = open(source, "rb")
        total = os.fstat(src.fileno()).st_size
    except OSError as exc:
        raise DownloadError(f"{url}: cannot read local mirror file {source}: {exc.strerror or exc}", url=url) from exc
    with src:
        offset = _start_offset(part, expected)
        if offset > total:
            part.unlink()
            offset = 0
        src.seek(offset)
        state.resumed = state.resumed or offset > 0
        state.bar.reset(total=total)
        state.bar.update(offset)
        with open(part, "ab" if offset else "wb") as f:
            while chunk := src.read(_CHUNK):
                f.write(chunk)
                state.bytes_downloaded += len(chunk)
                state.bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
