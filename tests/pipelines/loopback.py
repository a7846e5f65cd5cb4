"""A real HTTP server on 127.0.0.1 for tests, with per-path fault injection and request accounting.

Tests must not touch the network, but mocking httpx would not exercise what matters for downloads:
real sockets, dropped connections, ``Range`` handling. This module runs ``http.server.ThreadingHTTPServer``
(HTTP/1.1, keep-alive) on an ephemeral port in a background thread.

Usage::

    from tests.pipelines.loopback import LoopbackServer

    with LoopbackServer({"data/a.bin": payload}, root=some_dir) as server:
        server.add("b.bin", other_bytes, drop_after=1000)    # content and faults for one path
        server.add("c.bin", data, headers={"ETag": '"abc"'})  # extra response headers for one path
        server.fault("data/a.bin", status=500, times=2)     # faults for an existing path
        url = server.url("data/a.bin")                      # http://127.0.0.1:<port>/data/a.bin
        ...
        stats = server.stats("data/a.bin")
        stats.requests, stats.bytes_sent, stats.statuses, stats.ranges
        server.max_in_flight                                # peak concurrent requests (see below)

As a pytest fixture::

    @pytest.fixture
    def server():
        with LoopbackServer() as srv:
            yield srv

Content comes from the in-memory dict (``files`` / :meth:`LoopbackServer.add`) first, then from files
under ``root``; anything else is a 404 (with ``not_found_headers``). GET and HEAD are served. ``Range: bytes=N-`` and
``bytes=N-M`` get 206 with ``Content-Range`` (416 past the end). Faults (keyword arguments of
:class:`Fault`, set with ``add`` or ``fault``), counted from the path's first request:

* ``status=500, times=k``: answer that status to the first k requests (``times=None``: always);
  ``status=404`` makes a path missing.
* ``drop_after=N, drop_times=k``: send the headers (with the full ``Content-Length``) and N body bytes of
  the first k responses, then close the connection, like a mirror dying mid-transfer.
* ``corrupt=True``: serve wrong bytes of the right length (each byte inverted).
* ``ignore_range=True``: always answer 200 with the full body, like servers without range support.
* ``delay=seconds, delay_times=k``: wait before answering the first k requests (``None``: all); useful
  to observe concurrency or to make a client time out.

Accounting per path (:class:`PathStats`): requests, ``bytes_sent`` (body bytes of file content written
to the socket, so a resume test can check that only the missing bytes were sent), statuses and the
``Range`` header of each request; all of it is updated before the client sees the answer, so tests can
assert right after a call. ``max_in_flight`` is the peak number of requests, across all paths, received
but not yet answered (the ``delay`` is spent in that window); it can undercount but never overcount the
client's concurrency. :meth:`LoopbackServer.reset_stats` clears all of it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["Fault", "LoopbackServer", "PathStats"]

_INVERT = bytes(255 - i for i in range(256))
_WRITE_CHUNK = 16 * 1024


@dataclass
class Fault:
    """What to do wrong for one path; see the module docstring."""

    status: int | None = None
    times: int | None = None
    drop_after: int | None = None
    drop_times: int = 1
    corrupt: bool = False
    ignore_range: bool = False
    delay: float = 0.0
    delay_times: int | None = None


@dataclass
class PathStats:
    """What the server did for one path."""

    requests: int = 0
    bytes_sent: int = 0
    statuses: list[int] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1:<ephemeral>; start/stop it with ``with`` or start()/stop()."""

    def __init__(self, files: Mapping[str, bytes] | None = None, *, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self._files: dict[str, bytes] = {_key(path): bytes(data) for path, data in (files or {}).items()}
        self._faults: dict[str, Fault] = {}
        self._headers: dict[str, dict[str, str]] = {}
        self.not_found_headers: dict[str, str] = {}  # extra headers of every 404 for a missing path
        self._stats: dict[str, PathStats] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- configuration ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LoopbackServer is not running; use it as a context manager or call start()")
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def url(self, path: str) -> str:
        """The URL under which ``path`` is served."""
        return f"{self.base_url}/{quote(_key(path))}"

    def add(self, path: str, data: bytes, *, headers: Mapping[str, str] | None = None, **fault: Any) -> str:
        """Serve ``data`` at ``path`` (with extra response ``headers`` and optional :class:`Fault` keywords);
        returns its URL."""
        with self._lock:
            self._files[_key(path)] = bytes(data)
            if headers is not None:
                self._headers[_key(path)] = dict(headers)
        if fault:
            self.fault(path, **fault)
        return self.url(path)

    def fault(self, path: str, **fault: Any) -> None:
        """Replace the faults of ``path`` (``fault(path)`` with no keywords clears them)."""
        with self._lock:
            self._faults[_key(path)] = Fault(**fault)

    # --- accounting -------------------------------------------------------------------------------------

    def stats(self, path: str) -> PathStats:
        """A snapshot of what was served for ``path`` (zeros if it was never requested)."""
        with self._lock:
            current = self._stats.get(_key(path), PathStats())
            return PathStats(current.requests, current.bytes_sent, list(current.statuses), list(current.ranges))

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(stats.requests for stats in self._stats.values())

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self.max_in_flight = 0

    # --- used by the handler ----------------------------------------------------------------------------

    def _begin(self, key: str, range_header: str | None) -> tuple[int, Fault]:
        with self._lock:
            stats = self._stats.setdefault(key, PathStats())
            stats.requests += 1
            stats.ranges.append(range_header)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return stats.requests, self._faults.get(key, Fault())

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _record(self, key: str, *, status: int | None = None, sent: int = 0) -> None:
        with self._lock:
            stats = self._stats.setdefault(key, PathStats())
            if status is not None:
                stats.statuses.append(status)
            stats.bytes_sent += sent

    def _extra_headers(self, key: str) -> dict[str, str]:
        with self._lock:
            return dict(self._headers.get(key, {}))

    def _content(self, key: str) -> bytes | None:
        with self._lock:
            data = self._files.get(key)
        if data is not None or self.root is None:
            return data
        root = self.root.resolve()
        candidate = (root / key).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate.read_bytes()


def _key(path: str) -> str:
    return path.lstrip("/")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block stop()
    owner: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-response are expected here; keep test output clean."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an abandoned keep-alive connection frees its thread eventually
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _serve(self, *, send_body: bool) -> None:
        owner = self.server.owner
        key = unquote(urlsplit(self.path).path).lstrip("/")
        range_header = self.headers.get("Range")
        number, fault = owner._begin(key, range_header)
        try:
            if fault.delay and (fault.delay_times is None or number <= fault.delay_times):
                time.sleep(fault.delay)
        finally:
            # In flight ends before the first answer byte: the client cannot have sent its next request
            # yet, so max_in_flight never overcounts the client's concurrency.
            owner._end()
        try:
            if fault.status is not None and (fault.times is None or number <= fault.times):
                self._plain(key, fault.status)
                return
            data = owner._content(key)
            if data is None:
                self._plain(key, 404, owner.not_found_headers)
                return
            if fault.corrupt:
                data = data.translate(_INVERT)
            status, start, end = 200, 0, len(data)
            if range_header and not fault.ignore_range:
                match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", range_header)
                if match:
                    start = int(match[1])
                    end = min(int(match[2]) + 1, len(data)) if match[2] else len(data)
                    if start >= len(data) or start >= end:
                        self._plain(key, 416, {"Content-Range": f"bytes */{len(data)}"})
                        return
                    status = 206
            body = data[start:end]
            owner._record(key, status=status)  # before answering: the client may check stats right after
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "none" if fault.ignore_range else "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            for name, value in owner._extra_headers(key).items():
                self.send_header(name, value)
            self.end_headers()
            if not send_body:
                return
            drop = fault.drop_after is not None and number <= fault.drop_times
            limit = min(len(body), fault.drop_after) if drop and fault.drop_after is not None else len(body)
            for offset in range(0, limit, _WRITE_CHUNK):
                piece = body[offset : min(offset + _WRITE_CHUNK, limit)]
                owner._record(key, sent=len(piece))  # counted first, for the same reason
                try:
                    self.wfile.write(piece)
                except OSError:
                    owner._record(key, sent=-len(piece))
                    raise
            if limit < len(body):
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # FIN after the bytes: the client sees a short body
        except OSError:
            self.close_connection = True  # the client went away; nothing to answer

    def _plain(self, key: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        body = f"{status} for /{key}\n".encode()
        self.server.owner._record(key, status=status)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
