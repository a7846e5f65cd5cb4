"""Safe, atomic, idempotent unpacking of downloaded .zip and .tar[.gz|.bz2|.xz] archives.

Dataset archives come from third-party mirrors, so every member is checked before anything is written:
absolute paths, ``..`` traversal, links and device/FIFO entries raise :class:`UnsafeArchiveError`
naming the archive and the member. The members are extracted into a temporary sibling of
``target_dir`` which is renamed into place only once complete, with a ``.complete`` marker (JSON: the
archive's sha256, size and member list) inside. A killed unpack therefore leaves at most a stale
temporary directory that the next run deletes; it never leaves a ``target_dir`` that looks finished.
Re-running on a complete target is a no-op (:func:`is_extracted`).

``target_dir`` belongs to one archive: a re-extraction replaces it wholesale. To avoid deleting
someone's data, an existing ``target_dir`` is only replaced when everything in it is a path the archive
(or the previous extraction recorded in its marker) produces; otherwise :class:`ArchiveError` names the
stray path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from features.media import hash_file

__all__ = ["MARKER", "ArchiveError", "UnsafeArchiveError", "is_extracted", "safe_extract"]

MARKER = ".complete"
_MARKER_FORMAT = 1
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_PARTIAL = ".partial"
_OLD = ".old"
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(ValueError):
    """The archive cannot be unpacked as asked (format, corruption, selection, target in the way)."""


class UnsafeArchiveError(ArchiveError):
    """A member would write outside the target or create a link/device; nothing was extracted."""

    def __init__(self, archive: Path, member: str, reason: str) -> None:
        super().__init__(f"{archive}: refusing to extract member {member!r}: {reason}; nothing was extracted")
        self.archive = archive
        self.member = member
        self.reason = reason


@dataclass(frozen=True)
class _Entry:
    """One archive member: its raw name, normalised relative path, kind and the library's handle."""

    raw: str
    path: str  # "a/b.txt": no leading "./", no empty parts; "" is the archive root itself
    kind: str  # "file", "dir", or a description of what makes it unsafe ("symlink to '/etc/passwd'")
    handle: Any  # zipfile.ZipInfo or tarfile.TarInfo


def safe_extract(
    archive: Path,
    target_dir: Path,
    *,
    members: Iterable[str] | None = None,
    sha256: str | None = None,
) -> list[Path]:
    """Unpack ``archive`` into ``target_dir`` atomically; return the extracted regular files.

    ``members`` restricts extraction to those member names (exact names; ``./`` prefixes ignored) and
    only those are validated. ``sha256`` is the archive's known digest (e.g. ``DownloadResult.sha256``),
    trusted to save re-hashing a multi-GB file. Returns immediately when ``target_dir`` already holds a
    complete extraction of this archive and selection.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    kind = _archive_kind(archive)
    digest = _given_digest(archive, sha256) or hash_file(archive)
    selection = _selection(members)
    previous = _read_marker(target_dir)
    if previous is not None and _marker_matches(previous, archive, digest, selection, target_dir):
        return [target_dir / name for name in previous["files"]]

    with _open(archive, kind) as (handle, entries):
        chosen = _choose(archive, entries, selection)
        for entry in chosen:
            _validate(archive, entry)
        _check_replaceable(archive, target_dir, previous, chosen)
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target_dir)
        # Not tempfile.mkdtemp: its 0700 mode would become target_dir's mode after the rename.
        staging = target_dir.with_name(f".{target_dir.name}.{uuid.uuid4().hex[:8]}{_PARTIAL}")
        staging.mkdir()
        try:
            _extract(archive, handle, chosen, staging)
            files = list(dict.fromkeys(entry.path for entry in chosen if entry.kind == "file"))
            entry_paths = list(dict.fromkeys(entry.path for entry in chosen))
            marker = {
                "format": _MARKER_FORMAT,
                "archive": archive.name,
                "archive_size": archive.stat().st_size,
                "archive_sha256": digest,
                "member_count": len(entry_paths),
                "selection": selection,
                "entries": entry_paths,
                "files": files,
            }
            (staging / MARKER).write_text(json.dumps(marker))  # last: the staging dir is now complete
            _swap_into_place(staging, target_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return [target_dir / name for name in files]


def is_extracted(
    archive: Path,
    target_dir: Path,
    *,
    members: Iterable[str] | None = None,
    sha256: str | None = None,
) -> bool:
    """Whether ``target_dir`` holds a complete extraction of exactly this archive (and selection).

    True only if the marker names this archive's sha256 and size, the same member selection, and every
    recorded file still exists. ``sha256`` as in :func:`safe_extract`.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    marker = _read_marker(target_dir)
    if marker is None:
        return False
    digest = _given_digest(archive, sha256)
    if digest is None:
        if marker.get("archive_size") != archive.stat().st_size:
            return False  # cheap rejection before hashing a large archive
        digest = hash_file(archive)
    return _marker_matches(marker, archive, digest, _selection(members), target_dir)


# --- marker -------------------------------------------------------------------------------------------


def _read_marker(target_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((target_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("format") == _MARKER_FORMAT else None


def _marker_matches(
    marker: dict[str, Any], archive: Path, digest: str, selection: list[str] | None, target_dir: Path
) -> bool:
    files, entries = marker.get("files"), marker.get("entries")
    if not isinstance(files, list) or not isinstance(entries, list):
        return False
    return (
        marker.get("archive_sha256") == digest
        and marker.get("archive_size") == archive.stat().st_size
        and marker.get("selection") == selection
        and marker.get("member_count") == len(entries)
        and all((target_dir / name).is_file() for name in files)
    )


def _given_digest(archive: Path, sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    text = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"{archive}: sha256 must be 64 hex characters, got {sha256!r}")
    return text


# --- reading and validating members -------------------------------------------------------------------


def _archive_kind(archive: Path) -> str:
    name = archive.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    raise ArchiveError(f"{archive}: unsupported archive type; expected one of .zip, {', '.join(_TAR_SUFFIXES)}")


def _relative(raw: str) -> str:
    """The member's path relative to the target, leniently normalised (validation happens separately)."""
    return "/".join(part for part in raw.replace("\\", "/").split("/") if part not in ("", "."))


def _selection(members: Iterable[str] | None) -> list[str] | None:
    if members is None:
        return None
    if isinstance(members, str):
        raise TypeError("members must be a collection of member names, not a single string")
    return sorted({_relative(name) for name in members})


@contextmanager
def _open(archive: Path, kind: str) -> Iterator[tuple[zipfile.ZipFile | tarfile.TarFile, list[_Entry]]]:
    """Yield the open archive and its members, turning library errors into one clear ArchiveError."""
    corrupt = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError)
    handle: zipfile.ZipFile | tarfile.TarFile
    try:
        handle = zipfile.ZipFile(archive) if kind == "zip" else tarfile.open(archive, mode="r:*")
    except FileNotFoundError:
        raise
    except corrupt as exc:
        raise ArchiveError(f"{archive}: not a readable {kind} archive ({type(exc).__name__}: {exc})") from exc
    with handle:
        try:
            if isinstance(handle, zipfile.ZipFile):
                entries = [_zip_entry(info) for info in handle.infolist()]
            else:
                entries = [_tar_entry(info) for info in handle.getmembers()]
        except corrupt as exc:
            raise ArchiveError(f"{archive}: corrupt {kind} archive ({type(exc).__name__}: {exc})") from exc
        yield handle, entries


def _zip_entry(info: zipfile.ZipInfo) -> _Entry:
    mode = info.external_attr >> 16  # Unix st_mode when the archiver recorded one, else 0
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        kind = "symlink (zip external attributes)"
    elif file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = f"special file (mode {oct(mode)})"
    else:
        kind = "dir" if info.is_dir() or file_type == stat.S_IFDIR else "file"
    return _Entry(info.filename, _relative(info.filename), kind, info)


def _tar_entry(info: tarfile.TarInfo) -> _Entry:
    if info.isreg():
        kind = "file"
    elif info.isdir():
        kind = "dir"
    elif info.issym():
        kind = f"symlink to {info.linkname!r}"
    elif info.islnk():
        kind = f"hardlink to {info.linkname!r}"
    elif info.ischr() or info.isblk():
        kind = "device file"
    elif info.isfifo():
        kind = "FIFO"
    else:
        kind = f"unsupported member type {info.type!r}"
    return _Entry(info.name, _relative(info.name), kind, info)


def _choose(archive: Path, entries: list[_Entry], selection: list[str] | None) -> list[_Entry]:
    if selection is None:
        return [entry for entry in entries if not (entry.path == "" and entry.kind == "dir")]  # skip "./"
    wanted = set(selection)
    chosen = [entry for entry in entries if entry.path in wanted]
    missing = wanted - {entry.path for entry in chosen}
    if missing:
        raise ArchiveError(f"{archive}: requested members not in the archive: {sorted(missing)[:10]}")
    return chosen


def _validate(archive: Path, entry: _Entry) -> None:
    """Raise UnsafeArchiveError unless ``entry`` is a plain file or directory inside the target."""
    raw = entry.raw
    if raw.startswith(("/", "\\")) or _DRIVE.match(raw):
        raise UnsafeArchiveError(archive, raw, "absolute path")
    if ".." in raw.replace("\\", "/").split("/"):
        raise UnsafeArchiveError(archive, raw, "path traversal ('..')")
    if entry.kind not in ("file", "dir"):
        raise UnsafeArchiveError(archive, raw, f"{entry.kind} (only regular files and directories are allowed)")
    if entry.path == "":
        raise UnsafeArchiveError(archive, raw, "empty file name")
    if "\x00" in raw:
        raise UnsafeArchiveError(archive, raw, "NUL byte in name")
    if entry.path == MARKER:
        raise ArchiveError(f"{archive}: member {raw!r} collides with the completion marker {MARKER}")


# --- writing ------------------------------------------------------------------------------------------


def _extract(archive: Path, handle: zipfile.ZipFile | tarfile.TarFile, chosen: list[_Entry], staging: Path) -> None:
    """Write the validated members with the standard library, which handles the formats' details."""
    try:
        if isinstance(handle, zipfile.ZipFile):
            handle.extractall(staging, members=[entry.handle for entry in chosen])
        elif hasattr(tarfile, "data_filter"):
            # Second line of defence only: every member was validated above.
            handle.extractall(staging, members=[entry.handle for entry in chosen], filter="data")
        else:  # Python without extraction filters (< 3.10.12 / 3.11.4)
            handle.extractall(staging, members=[entry.handle for entry in chosen])
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(archive, exc.tarinfo.name, str(exc)) from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, RuntimeError, OSError) as exc:
        raise ArchiveError(f"{archive}: extraction failed ({type(exc).__name__}: {exc})") from exc


def _check_replaceable(archive: Path, target_dir: Path, previous: dict[str, Any] | None, chosen: list[_Entry]) -> None:
    """Refuse to replace a ``target_dir`` holding anything this archive or its last extraction did not make."""
    if not target_dir.exists() and not target_dir.is_symlink():
        return
    if target_dir.is_symlink() or not target_dir.is_dir():
        raise ArchiveError(f"{target_dir} exists and is not a directory; cannot unpack {archive.name} there")
    known = {entry.path for entry in chosen}
    if previous is not None:
        known.update(name for name in previous.get("entries", []) if isinstance(name, str))
    allowed = {MARKER}
    for name in known:
        parts = PurePosixPath(name).parts
        allowed.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    for dirpath, dirnames, filenames in os.walk(target_dir):
        base = Path(dirpath).relative_to(target_dir)
        for name in (*dirnames, *filenames):
            relative = (base / name).as_posix()
            if relative not in allowed:
                raise ArchiveError(
                    f"refusing to replace {target_dir} with the contents of {archive.name}: it holds "
                    f"{relative!r}, which that archive does not contain; move it away or choose another target_dir"
                )


def _remove_stale(target_dir: Path) -> None:
    """Delete staging/old directories left next to ``target_dir`` by killed runs."""
    prefix = f".{target_dir.name}."
    for sibling in target_dir.parent.iterdir():
        if sibling.name.startswith(prefix) and sibling.name.endswith((_PARTIAL, _OLD)) and sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)


def _swap_into_place(staging: Path, target_dir: Path) -> None:
    """Rename the finished staging dir onto ``target_dir`` (POSIX cannot rename over a non-empty dir)."""
    if not target_dir.exists():
        os.replace(staging, target_dir)
        return
    old = target_dir.with_name(f".{target_dir.name}.{uuid.uuid4().hex[:8]}{_OLD}")
    os.replace(target_dir, old)
    os.replace(staging, target_dir)
    shutil.rmtree(old, ignore_errors=True)
