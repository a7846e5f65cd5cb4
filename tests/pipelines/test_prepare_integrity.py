"""Prepare writes its table set as a unit (completion marker last, stale temporary files removed) and its
tables do not depend on where the data lives (issue 16)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pipelines.prepare as prepare_mod
from pipelines.prepare import COMPLETE, IncompleteTableSetError, check_table_set, prepare_dataset, tables_dir
from pipelines.tables import read_table


@pytest.fixture(scope="module")
def gqa_raw(task_tables) -> Path:
    return task_tables.root / "raw" / "gqa"


def _copy(raw: Path, root: Path) -> Path:
    shutil.copytree(raw, root / "raw" / "gqa")
    return root


def test_the_same_data_in_two_folders_gives_byte_identical_tables(gqa_raw, tmp_path, monkeypatch):
    a = _copy(gqa_raw, tmp_path / "a")
    b = _copy(gqa_raw, tmp_path / "elsewhere" / "deeper" / "b")
    prepare_dataset("gqa", a)
    monkeypatch.chdir(tmp_path / "elsewhere")
    prepare_dataset("gqa", Path("deeper/b"))  # a cwd-relative root, as a user types it
    names = sorted(p.name for p in tables_dir(a, "gqa").glob("*.arrow"))
    assert "media.arrow" in names and len(names) >= 3
    for n in names:
        assert (tables_dir(a, "gqa") / n).read_bytes() == (tables_dir(b, "gqa") / n).read_bytes(), n
    meta = read_table(tables_dir(a, "gqa") / "media.arrow").schema.metadata
    assert b"elsewhere" not in b"".join(meta.values()) and str(tmp_path).encode() not in b"".join(meta.values())


def test_an_interrupted_prepare_leaves_no_complete_looking_set_and_the_next_run_cleans_up(gqa_raw, tmp_path,
                                                                                          monkeypatch):
    root = _copy(gqa_raw, tmp_path / "data")
    out = tables_dir(root, "gqa")
    prepare_dataset("gqa", root)
    doc = check_table_set(out)
    assert set(doc["files"]) >= {"media.arrow", "train.arrow", "prepare_report.json"}
    # A second run killed after its first table: the marker is gone, so the set no longer looks complete.
    real_write, calls = prepare_mod.write_table, []

    def dying_write(table, path):
        calls.append(path)
        if len(calls) == 2:
            (Path(path).parent / f".{Path(path).name}.x1y2.tmp").write_bytes(b"half a table")  # its debris
            raise KeyboardInterrupt
        return real_write(table, path)

    monkeypatch.setattr(prepare_mod, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("gqa", root)
    monkeypatch.setattr(prepare_mod, "write_table", real_write)
    assert not (out / COMPLETE).exists()
    with pytest.raises(IncompleteTableSetError, match="prepare was interrupted"):
        check_table_set(out)
    assert list(out.glob(".*.tmp"))
    prepare_dataset("gqa", root)
    assert not list(out.glob(".*.tmp")) and check_table_set(out)
    (out / "media.arrow").unlink()  # a set with its media index missing is not complete
    with pytest.raises(IncompleteTableSetError, match=r"media\.arrow"):
        check_table_set(out)
