"""pipelines.download against a real loopback HTTP server: resume, retries, verification, skipping."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from pipelines.download import (
    ChecksumError,
    DownloadError,
    DownloadItem,
    DownloadManyError,
    download,
    download_many,
    part_path,
)
from tests.pipelines.loopback import LoopbackServer

SIZE = 256 * 1024
CUT = 100_000  # where faults cut the body
FAST = {"backoff": 0.001, "progress": False}


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def payload() -> bytes:
    return os.urandom(SIZE)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_plain_download_verifies_and_reports(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    dest = tmp_path / "sub" / "a.bin"
    result = download(url, dest, sha256=sha(payload), md5=hashlib.md5(payload).hexdigest(), size=SIZE, **FAST)
    assert dest.read_bytes() == payload
    assert (result.url, result.path, result.size, result.sha256) == (url, dest, SIZE, sha(payload))
    assert (result.bytes_downloaded, result.skipped, result.resumed, result.attempts) == (SIZE, False, False, 1)
    assert not part_path(dest).exists()


def test_interrupted_download_resumes_with_only_the_missing_bytes(server, payload, tmp_path):
    url = server.add("a.bin", payload, drop_after=CUT)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="giving up after 1 failed attempts"):
        download(url, dest, sha256=sha(payload), retries=0, **FAST)
    assert part_path(dest).stat().st_size == CUT and not dest.exists()

    result = download(url, dest, sha256=sha(payload), retries=0, **FAST)
    assert dest.read_bytes() == payload
    assert result.resumed and result.bytes_downloaded == SIZE - CUT
    stats = server.stats("a.bin")
    assert stats.ranges == [None, f"bytes={CUT}-"]
    assert stats.statuses == [200, 206]
    assert stats.bytes_sent == SIZE  # every byte crossed the wire exactly once


def test_drops_within_one_call_are_resumed_and_retried(server, payload, tmp_path):
    url = server.add("a.bin", payload, drop_after=CUT, drop_times=2)
    result = download(url, tmp_path / "a.bin", sha256=sha(payload), **FAST)
    assert (tmp_path / "a.bin").read_bytes() == payload
    assert result.attempts == 3 and result.resumed and result.bytes_downloaded == SIZE
    stats = server.stats("a.bin")
    assert stats.ranges == [None, f"bytes={CUT}-", f"bytes={2 * CUT}-"]
    assert stats.bytes_sent == SIZE


def test_server_ignoring_range_restarts_from_zero(server, payload, tmp_path):
    url = server.add("a.bin", payload, drop_after=CUT, ignore_range=True)
    result = download(url, tmp_path / "a.bin", sha256=sha(payload), size=SIZE, **FAST)
    assert (tmp_path / "a.bin").read_bytes() == payload
    assert server.stats("a.bin").statuses == [200, 200]
    assert not result.resumed and result.bytes_downloaded == CUT + SIZE


def test_checksum_mismatch_redownloads_once_then_names_url_and_digests(server, payload, tmp_path):
    url = server.add("a.bin", payload, corrupt=True)
    wrong = sha(payload.translate(bytes(255 - i for i in range(256))))
    dest = tmp_path / "a.bin"
    with pytest.raises(ChecksumError) as info:
        download(url, dest, sha256=sha(payload), **FAST)
    message = str(info.value)
    assert url in message and sha(payload) in message and wrong in message
    assert (info.value.expected, info.value.actual) == (sha(payload), wrong)
    assert server.stats("a.bin").requests == 2
    assert not dest.exists() and not part_path(dest).exists()


def test_size_mismatch_is_reported(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    with pytest.raises(ChecksumError, match=rf"size: expected {SIZE + 1} bytes, got {SIZE} bytes"):
        download(url, tmp_path / "a.bin", size=SIZE + 1, **FAST)


def test_404_fails_at_once_naming_the_url(server, tmp_path):
    url = server.url("missing.bin")
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "m.bin", **FAST)
    assert info.value.status == 404 and url in str(info.value) and "404" in str(info.value)
    assert server.stats("missing.bin").requests == 1
    assert not (tmp_path / "m.bin").exists()


def test_500s_are_retried_then_succeed(server, payload, tmp_path):
    url = server.add("a.bin", payload, status=500, times=2)
    result = download(url, tmp_path / "a.bin", sha256=sha(payload), **FAST)
    assert result.attempts == 3 and (tmp_path / "a.bin").read_bytes() == payload
    assert server.stats("a.bin").statuses == [500, 500, 200]


def test_persistent_5xx_gives_up_after_the_retries(server, payload, tmp_path):
    url = server.add("a.bin", payload, status=503)
    with pytest.raises(DownloadError, match=r"giving up after 3 failed attempts.*HTTP 503") as info:
        download(url, tmp_path / "a.bin", retries=2, **FAST)
    assert url in str(info.value) and server.stats("a.bin").requests == 3


def test_timeout_is_retried(server, payload, tmp_path):
    url = server.add("a.bin", payload, delay=1.0, delay_times=1)
    result = download(url, tmp_path / "a.bin", sha256=sha(payload), timeout=0.25, **FAST)
    assert result.attempts >= 2 and (tmp_path / "a.bin").read_bytes() == payload
    assert server.stats("a.bin").requests == result.attempts


def test_verified_dest_is_skipped_without_any_request(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    dest = tmp_path / "a.bin"
    dest.write_bytes(payload)
    for checks in ({"sha256": sha(payload)}, {"size": SIZE}, {}):
        result = download(url, dest, **checks, **FAST)
        assert result.skipped and result.attempts == 0 and result.bytes_downloaded == 0
        assert result.sha256 == sha(payload)
    assert server.total_requests == 0


def test_dest_failing_verification_is_downloaded_again(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"stale")
    result = download(url, dest, sha256=sha(payload), **FAST)
    assert not result.skipped and dest.read_bytes() == payload


def test_stale_part_from_a_killed_run_is_resumed(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(payload[:CUT])
    result = download(url, dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload and result.resumed and result.bytes_downloaded == SIZE - CUT
    assert server.stats("a.bin").ranges == [f"bytes={CUT}-"]


def test_complete_part_answered_416_is_just_verified(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(payload)
    result = download(url, dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload and result.bytes_downloaded == 0
    assert server.stats("a.bin").statuses == [416]


def test_part_of_another_file_version_is_replaced_by_a_fresh_download(server, payload, tmp_path):
    url = server.add("a.bin", payload)
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(os.urandom(CUT))  # resumable-looking, but the wrong bytes
    result = download(url, dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload
    assert server.stats("a.bin").ranges == [f"bytes={CUT}-", None]
    assert result.bytes_downloaded == SIZE - CUT + SIZE


def test_file_urls_copy_verify_and_resume(payload, tmp_path):
    source = tmp_path / "mirror dir" / "a.bin"
    source.parent.mkdir()
    source.write_bytes(payload)
    dest = tmp_path / "out" / "a.bin"
    part_path(dest).parent.mkdir()
    part_path(dest).write_bytes(payload[:CUT])
    result = download(source.as_uri(), dest, sha256=sha(payload), **FAST)
    assert dest.read_bytes() == payload and result.resumed and result.bytes_downloaded == SIZE - CUT
    assert download(source.as_uri(), dest, sha256=sha(payload), **FAST).skipped

    with pytest.raises(ChecksumError, match="sha256"):
        download(source.as_uri(), tmp_path / "out" / "b.bin", sha256="0" * 64, **FAST)
    assert not (tmp_path / "out" / "b.bin").exists()
    missing = (tmp_path / "nope.bin").as_uri()
    with pytest.raises(DownloadError, match=f"{missing}: cannot read local mirror file"):
        download(missing, tmp_path / "out" / "c.bin", **FAST)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sha256": "abc"}, "sha256 must be 64 hex characters, got 'abc'"),
        ({"md5": "z" * 32}, "md5 must be 32 hex characters"),
        ({"size": -1}, "size must be a non-negative int"),
        ({"retries": -1}, "retries must be >= 0"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        download("http://127.0.0.1:9/x", tmp_path / "x", **kwargs)


def test_unsupported_scheme_is_named(tmp_path):
    with pytest.raises(ValueError, match="ftp://host/x: unsupported URL scheme 'ftp'"):
        download("ftp://host/x", tmp_path / "x")


def test_download_many_completes_all_within_the_concurrency_limit(server, tmp_path):
    datas = [os.urandom(20_000 + i) for i in range(7)]
    items = []
    for i, data in enumerate(datas):
        server.add(f"f{i}.bin", data, delay=0.15)
        items.append(DownloadItem(server.url(f"f{i}.bin"), tmp_path / f"f{i}.bin", sha256=sha(data)))
    results = download_many(items, max_concurrency=3, **FAST)
    assert [r.path for r in results] == [item.dest for item in items]
    assert all(r.path.read_bytes() == data for r, data in zip(results, datas))
    assert 2 <= server.max_in_flight <= 3


def test_download_many_reports_every_failure_after_finishing_the_rest(server, payload, tmp_path):
    good = DownloadItem(server.add("good.bin", payload), tmp_path / "good.bin", sha256=sha(payload))
    bad = DownloadItem(server.url("gone.bin"), tmp_path / "gone.bin")
    with pytest.raises(DownloadManyError) as info:
        download_many([bad, good], max_concurrency=2, **FAST)
    assert "1 of 2 downloads failed" in str(info.value) and bad.url in str(info.value)
    assert info.value.results[1] is not None and good.dest.read_bytes() == payload


def test_download_many_checks_items_before_fetching(server, tmp_path):
    items = [
        DownloadItem(server.url("a"), tmp_path / "a"),
        DownloadItem(server.url("b"), tmp_path / "b", sha256="nothex"),
    ]
    with pytest.raises(ValueError, match="sha256 must be 64 hex characters, got 'nothex'"):
        download_many(items, **FAST)
    with pytest.raises(ValueError, match="same dest"):
        download_many([items[0], DownloadItem(server.url("c"), tmp_path / "a")], **FAST)
    assert server.total_requests == 0
