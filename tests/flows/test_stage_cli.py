"""``vlpet build TASK --store ... [--splits ...]``: the build stage from the shell, cached and in the lineage
like the build-dataset flow."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from flows.cli import app
from flows.stages import task_splits
from pipelines.tables import read_table
from pipelines.tasks import open_task_table


def test_vlpet_build_builds_caches_and_records(tmp_path, task_tables):
    root = tmp_path / "data"
    shutil.copytree(task_tables.root / "tables" / "nlvr2", root / "tables" / "nlvr2")
    store = task_tables.base / "stores" / "nlvr2"  # fake features for every NLVR2 image (read only here)
    splits = list(task_splits("nlvr2"))[:2]
    args = ["build", "nlvr2", "--store", str(store), "--root", str(root), *(a for s in splits for a in ("--splits", s))]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    for split in splits:
        built = root / "tasks" / "nlvr2" / f"{split}.arrow"
        rows = read_table(root / "tables" / "nlvr2" / f"{split}.arrow").num_rows
        assert open_task_table(built).num_rows == rows > 0  # every example has its features
        assert f"nlvr2 {split}: {rows}/{rows} rows" in first.output
    assert "stage computed" in first.output and f"0/{len(splits)} splits from the cache" in first.output

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and f"{len(splits)}/{len(splits)} splits from the cache" in again.output
    assert "cache hit" in again.output

    shown = runner.invoke(app, ["lineage", str(root / "tasks" / "nlvr2" / f"{splits[0]}.arrow"), "--json"])
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.output)
    assert tree["kind"] == "task-table" and tree["stage"] == "build"
    assert [c["kind"] for c in tree["inputs"]] == ["table", "features"]

    bad = runner.invoke(app, ["build", "imagenet", "--store", str(store), "--root", str(root)])
    assert bad.exit_code == 1 and "unknown task 'imagenet'" in bad.output
