"""Byte-deterministic writers for JSON, JSON lines, zip and tar.gz, recording every file written.

Archives normally embed the wall clock (zip entry times, tar mtimes, the gzip header), the user and the
umask; any of those would make two runs with one seed differ. Here every such field is pinned:
zip entries carry ``FIXED_ZIP_TIME`` and fixed permissions, tar members mtime ``FIXED_EPOCH`` with
uid/gid 0 and no user names, and the gzip header has mtime 0 and no file name. Members are written in
the order given (callers pass them sorted), so archive bytes depend only on content.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from features.media import hash_file
from pipelines.synth.manifest import FileEntry

FIXED_ZIP_TIME = (2015, 1, 1, 0, 0, 0)  # zip cannot store dates before 1980; any fixed value works
FIXED_EPOCH = 1420070400  # 2015-01-01T00:00:00Z, for tar members


def json_bytes(obj: Any, *, indent: int | None = None) -> bytes:
    """JSON as the upstream files are written: ``json.dumps`` defaults (ASCII, ', '/': ' separators)."""
    return json.dumps(obj, indent=indent).encode("utf-8")


def jsonl_bytes(records: Iterable[dict[str, Any]]) -> bytes:
    """JSON lines, one record per line, newline-terminated."""
    return b"".join(json.dumps(r).encode("utf-8") + b"\n" for r in records)


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def zip_bytes(members: Iterable[tuple[str, bytes]], *, compress: bool = True, dir_entries: bool = True) -> bytes:
    """A zip of ``(name, data)`` members with fixed times/permissions.

    ``dir_entries`` adds an explicit ``folder/`` entry before a folder's first file, as the ``zip`` tool
    does for the upstream archives (so consumers see the same member list shape).
    """
    buf = io.BytesIO()
    seen_dirs: set[str] = set()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            if dir_entries:
                for d in _parents(name):
                    if d not in seen_dirs:
                        seen_dirs.add(d)
                        info = zipfile.ZipInfo(d, date_time=FIXED_ZIP_TIME)
                        info.external_attr = (0o40755 << 16) | 0x10
                        info.create_system = 3
                        zf.writestr(info, b"")
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            info.compress_type = method
            zf.writestr(info, data, compress_type=method, compresslevel=6 if compress else None)
    return buf.getvalue()


def targz_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A gzip-compressed tar of ``(name, data)`` members (with their folders), all metadata pinned."""
    raw = io.BytesIO()
    seen_dirs: set[str] = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            for d in _parents(name):
                if d not in seen_dirs:
                    seen_dirs.add(d)
                    info = tarfile.TarInfo(d.rstrip("/"))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_EPOCH, 0, 0, "", ""
                    tf.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_EPOCH, 0, 0, "", ""
            tf.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


class OutputTree:
    """Writes files under ``root`` and remembers each one (path, size, sha256, source) for the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.entries: dict[str, FileEntry] = {}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, rel: str, data: bytes, source: str) -> Path:
        p = self.path(rel)
        p.write_bytes(data)
        return self.record(rel, source)

    def write_json(self, rel: str, obj: Any, source: str, *, indent: int | None = None) -> Path:
        return self.write_bytes(rel, json_bytes(obj, indent=indent), source)

    def write_jsonl(self, rel: str, records: Iterable[dict[str, Any]], source: str) -> Path:
        return self.write_bytes(rel, jsonl_bytes(records), source)

    def write_zip(self, rel: str, members: Iterable[tuple[str, bytes]], source: str, *, compress: bool = True,
                  dir_entries: bool = True) -> Path:
        return self.write_bytes(rel, zip_bytes(members, compress=compress, dir_entries=dir_entries), source)

    def write_targz(self, rel: str, members: Iterable[tuple[str, bytes]], source: str) -> Path:
        return self.write_bytes(rel, targz_bytes(members), source)

    def record(self, rel: str, source: str) -> Path:
        """Register a file already written at ``rel`` (e.g. an mp4 written by the encoder)."""
        p = self.root / rel
        self.entries[rel] = FileEntry(path=rel, size=p.stat().st_size, sha256=hash_file(p), source=source)
        return p
