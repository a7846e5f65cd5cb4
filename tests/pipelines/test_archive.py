"""pipelines.archive: hostile members are refused before anything is written; unpacking is atomic."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipelines.archive import MARKER, ArchiveError, UnsafeArchiveError, is_extracted, safe_extract

TREE = {
    "top.bin": os.urandom(3000),
    "images/a.jpg": os.urandom(50_000),
    "images/nested/b.jpg": os.urandom(70_000),
    "empty.txt": b"",
}


def write_zip(path: Path, entries: dict[str, bytes], *, extra: list[zipfile.ZipInfo] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for info in extra or []:
            zf.writestr(info, b"/etc/passwd")
    return path


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, io.BytesIO | None]]) -> Path:
    mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            tf.addfile(info, data)
    return path


def tree_members(prefix: str = "") -> list[tuple[tarfile.TarInfo, io.BytesIO | None]]:
    return [regular(prefix + name, data) for name, data in TREE.items()]


def snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    return {
        "zip": write_zip(src / "data.zip", TREE),
        "tar": write_tar(src / "data.tar", tree_members()),
        "tar.gz": write_tar(src / "data.tar.gz", tree_members("./")),
        "tgz": write_tar(src / "data.tgz", [special("images", tarfile.DIRTYPE), *tree_members()]),
    }


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tgz"])
def test_round_trip_is_exact_and_marked_complete(archives, tmp_path, kind):
    target = tmp_path / "out" / "data"
    files = safe_extract(archives[kind], target)
    assert sorted(files) == sorted(target / name for name in TREE)
    for name, data in TREE.items():
        assert (target / name).read_bytes() == data
    marker = json.loads((target / MARKER).read_text())
    assert marker["archive_sha256"] and marker["member_count"] >= len(TREE)
    assert is_extracted(archives[kind], target)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask  # like any mkdir, not mkdtemp's 0700
    assert snapshot(target.parent) == {"data", *(f"data/{p}" for p in snapshot(target))}  # no leftovers


def test_rerun_on_a_complete_target_is_a_no_op(archives, tmp_path):
    target = tmp_path / "data"
    first = safe_extract(archives["zip"], target)
    inodes = {p: p.stat().st_ino for p in first}
    target_inode = target.stat().st_ino
    assert safe_extract(archives["zip"], target) == first
    assert {p: p.stat().st_ino for p in first} == inodes and target.stat().st_ino == target_inode


ZIP_ATTACKS = {
    "traversal": "../evil.txt",
    "nested traversal": "images/../../evil.txt",
    "absolute": "/tmp/evil.txt",
    "drive": "C:/evil.txt",
}


@pytest.mark.parametrize("attack", sorted(ZIP_ATTACKS))
def test_zip_paths_escaping_the_target_are_refused(tmp_path, attack):
    member = ZIP_ATTACKS[attack]
    archive = write_zip(tmp_path / "evil.zip", {**TREE, member: b"pwned"})
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, tmp_path / "out" / "data")
    assert info.value.member == member and repr(member) in str(info.value) and str(archive) in str(info.value)
    assert snapshot(tmp_path) == before  # target (and its parent) never created, nothing written anywhere


def test_zip_symlink_entry_is_refused(tmp_path):
    link = zipfile.ZipInfo("images/passwd")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write_zip(tmp_path / "evil.zip", TREE, extra=[link])
    with pytest.raises(UnsafeArchiveError, match=r"'images/passwd'.*symlink"):
        safe_extract(archive, tmp_path / "data")
    assert not (tmp_path / "data").exists()


TAR_ATTACKS = {  # name -> (member name, tar type, link target, words the error must contain)
    "traversal": ("../evil.txt", tarfile.REGTYPE, "", "path traversal"),
    "absolute": ("/tmp/evil.txt", tarfile.REGTYPE, "", "absolute path"),
    "symlink": ("images/passwd", tarfile.SYMTYPE, "/etc/passwd", "symlink to '/etc/passwd'"),
    "relative symlink": ("images/up", tarfile.SYMTYPE, "../..", "symlink to '../..'"),
    "hardlink": ("images/hard", tarfile.LNKTYPE, "/etc/passwd", "hardlink to '/etc/passwd'"),
    "char device": ("dev/null", tarfile.CHRTYPE, "", "device file"),
    "block device": ("dev/sda", tarfile.BLKTYPE, "", "device file"),
    "fifo": ("pipe", tarfile.FIFOTYPE, "", "FIFO"),
}


@pytest.mark.parametrize("attack", sorted(TAR_ATTACKS))
@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_hostile_members_are_refused(tmp_path, attack, suffix):
    name, kind, linkname, reason = TAR_ATTACKS[attack]
    member = regular(name, b"pwned") if kind == tarfile.REGTYPE else special(name, kind, linkname)
    archive = write_tar(tmp_path / f"evil{suffix}", [*tree_members(), member])  # hostile member comes last
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, tmp_path / "out" / "data")
    assert info.value.member == name and repr(name) in str(info.value)
    assert reason in str(info.value) and str(archive) in str(info.value)
    assert snapshot(tmp_path) == before


def test_killed_unpack_leftovers_are_cleaned_and_the_work_redone(archives, tmp_path):
    target = tmp_path / "data"
    stale = tmp_path / ".data.deadbeef.partial"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "a.jpg").write_bytes(b"half")
    assert not is_extracted(archives["tar"], target)
    safe_extract(archives["tar"], target)
    assert not stale.exists()
    assert (target / "images" / "a.jpg").read_bytes() == TREE["images/a.jpg"]


def test_target_without_marker_is_redone(archives, tmp_path):
    target = tmp_path / "data"
    safe_extract(archives["zip"], target)
    (target / MARKER).unlink()  # as if an older, non-atomic unpack had died before finishing
    (target / "images" / "a.jpg").write_bytes(b"truncated")
    (target / "top.bin").unlink()
    assert not is_extracted(archives["zip"], target)
    safe_extract(archives["zip"], target)
    assert is_extracted(archives["zip"], target)
    assert all((target / name).read_bytes() == data for name, data in TREE.items())


def test_missing_file_invalidates_the_marker(archives, tmp_path):
    target = tmp_path / "data"
    safe_extract(archives["zip"], target)
    (target / "images" / "nested" / "b.jpg").unlink()
    assert not is_extracted(archives["zip"], target)
    safe_extract(archives["zip"], target)
    assert (target / "images" / "nested" / "b.jpg").read_bytes() == TREE["images/nested/b.jpg"]


def test_is_extracted_tracks_archive_and_selection(archives, tmp_path):
    target = tmp_path / "data"
    assert not is_extracted(archives["zip"], target)
    safe_extract(archives["zip"], target)
    assert is_extracted(archives["zip"], target)
    digest = json.loads((target / MARKER).read_text())["archive_sha256"]
    assert is_extracted(archives["zip"], target, sha256=digest.upper())
    assert not is_extracted(archives["zip"], target, sha256="0" * 64)
    assert not is_extracted(archives["zip"], target, members=["top.bin"])
    assert not is_extracted(archives["tar"], target)  # same content, different archive file


def test_new_archive_version_replaces_the_old_extraction(tmp_path):
    target = tmp_path / "data"
    archive = write_zip(tmp_path / "data.zip", TREE)
    safe_extract(archive, target)
    write_zip(archive, {"only.txt": b"v2"})
    assert not is_extracted(archive, target)
    assert safe_extract(archive, target) == [target / "only.txt"]
    assert snapshot(target) == {"only.txt", MARKER}


def test_member_selection(tmp_path):
    archive = write_tar(
        tmp_path / "data.tar", [*tree_members(), special("link", tarfile.SYMTYPE, "/etc/passwd")]
    )
    target = tmp_path / "data"
    files = safe_extract(archive, target, members=["./images/a.jpg", "top.bin"])
    assert files == [target / "top.bin", target / "images" / "a.jpg"]
    assert snapshot(target) == {"top.bin", "images", "images/a.jpg", MARKER}
    assert is_extracted(archive, target, members=["top.bin", "images/a.jpg"])
    assert not is_extracted(archive, target)
    with pytest.raises(ArchiveError, match=r"requested members not in the archive: \['nope'\]"):
        safe_extract(archive, tmp_path / "other", members=["nope"])
    with pytest.raises(UnsafeArchiveError, match="'link'"):
        safe_extract(archive, tmp_path / "other", members=["link"])


def test_foreign_content_in_target_is_never_deleted(archives, tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ArchiveError, match=r"refusing to replace .*'notes.txt'"):
        safe_extract(archives["zip"], target)
    assert (target / "notes.txt").read_text() == "mine"
    assert snapshot(target) == {"notes.txt"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.")]


def test_empty_existing_target_is_filled(archives, tmp_path):
    (tmp_path / "data").mkdir()
    safe_extract(archives["tgz"], tmp_path / "data")
    assert is_extracted(archives["tgz"], tmp_path / "data")


def test_bad_archives_are_named(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(ArchiveError, match=f"{junk}: not a readable zip archive"):
        safe_extract(junk, tmp_path / "out")
    junk_tar = tmp_path / "junk.tar.gz"
    junk_tar.write_bytes(os.urandom(1000))
    with pytest.raises(ArchiveError, match=f"{junk_tar}: not a readable tar archive"):
        safe_extract(junk_tar, tmp_path / "out")
    with pytest.raises(ArchiveError, match=r"data\.rar: unsupported archive type"):
        safe_extract(tmp_path / "data.rar", tmp_path / "out")
    assert not (tmp_path / "out").exists()
