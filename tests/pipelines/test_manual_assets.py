"""Importing user-supplied media (``--media-from``) keeps the raw store equal to what the user supplied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pipelines.fetch as fetch
from pipelines.fetch import import_manual_assets
from pipelines.sources import get_source

NLVR2 = get_source("nlvr2")  # manual asset: images/**/*-img[01].png


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(params=["link", "copy"])
def mode(request, monkeypatch):
    if request.param == "copy":  # another filesystem: os.link fails, files are copied
        def no_link(*_a, **_k):
            raise OSError("cross-device link")

        monkeypatch.setattr(fetch.os, "link", no_link)
    return request.param


def test_new_changed_and_removed_media_are_synced(tmp_path, mode):
    media, raw = tmp_path / "media", tmp_path / "raw"
    _write(media / "images/train/3/train-1-0-img0.png", b"AAAA")
    _write(media / "images/train/3/train-1-0-img1.png", b"BBBB")
    _write(media / "images/dev/dev-2-0-img0.png", b"CCCC")
    assert import_manual_assets(NLVR2, media, raw) == (3, 0)
    assert (raw / "images/train/3/train-1-0-img0.png").read_bytes() == b"AAAA"
    assert import_manual_assets(NLVR2, media, raw) == (0, 0)  # unchanged: nothing copied

    # Regenerated data: one image keeps its size but not its bytes (a new file, as a generator writes it),
    # one set moves to another train folder, and the raw store holds a file the pattern does not cover.
    changed = media / "images/dev/dev-2-0-img0.png"
    changed.unlink()
    _write(changed, b"DDDD")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 5_000_000_000))
    for side in "01":
        old = media / f"images/train/3/train-1-0-img{side}.png"
        _write(media / f"images/train/7/train-1-0-img{side}.png", old.read_bytes())
        old.unlink()
    keep = _write(raw / "images/notes.txt", b"user file")

    assert import_manual_assets(NLVR2, media, raw) == (3, 2)
    assert (raw / "images/dev/dev-2-0-img0.png").read_bytes() == b"DDDD"
    found = sorted(p.relative_to(raw).as_posix() for p in (raw / "images").rglob("*.png"))
    assert found == ["images/dev/dev-2-0-img0.png", "images/train/7/train-1-0-img0.png",
                     "images/train/7/train-1-0-img1.png"]
    assert keep.read_bytes() == b"user file"
    assert not list(raw.rglob(".*.tmp"))


def test_missing_source_folder_leaves_raw_media_alone(tmp_path):
    raw = tmp_path / "raw"
    kept = _write(raw / "images/dev/dev-2-0-img0.png", b"CCCC")
    (tmp_path / "media").mkdir()
    assert import_manual_assets(NLVR2, tmp_path / "media", raw) == (0, 0)
    assert kept.read_bytes() == b"CCCC"
