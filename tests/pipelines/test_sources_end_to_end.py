"""Every source downloads from a loopback HTTP mirror of synthetic files in upstream formats and
parses to tables whose counts match what the generator wrote (its manifest)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipelines.fetch import fetch_dataset, parse_sha256sums, write_sha256sums
from pipelines.prepare import prepare_dataset
from pipelines.sources import DATASETS, SOURCES
from pipelines.synth import generate
from pipelines.tables import read_table
from tests.pipelines.loopback import LoopbackServer


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mirror")
    generate(out, scale="tiny", seed=0)
    for source in SOURCES:
        if (out / source).is_dir():
            write_sha256sums(out / source)
    return out


@pytest.fixture(scope="module")
def prepared(mirror, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    with LoopbackServer(root=mirror) as server:
        reports = {d: fetch_dataset(d, root, mirror=server.base_url, progress=False, media_from=mirror / d)
                   for d in DATASETS}
        requests_first = server.total_requests
        again = fetch_dataset("vqa", root, mirror=server.base_url, progress=False)
        requests_again = server.total_requests - requests_first
    return root, reports, {d: prepare_dataset(d, root) for d in DATASETS}, again, requests_again


def _counts(mirror: Path) -> dict:
    return json.loads((mirror / "manifest.json").read_text())["counts"]


def test_every_dataset_downloads_verified(prepared):
    root, reports, _, again, requests_again = prepared
    for d in reports:
        manifest = json.loads((root / "raw" / d / "MANIFEST.json").read_text())
        assert {f["name"] for f in manifest["files"]} == {f.name for f in SOURCES[d].files if not f.optional}
        assert all(f["checksum_source"] == "mirror SHA256SUMS" for f in manifest["files"])
    # A re-run is free: only the mirror's SHA256SUMS is fetched again, every file is skipped.
    assert all(f["skipped"] for f in again.files)
    assert requests_again == 1


def test_table_counts_match_the_generator(prepared, mirror):
    _, _, reports, _, _ = prepared
    counts = _counts(mirror)
    records = {d: {s: c["records"] for s, c in v.items()} for d, v in counts.items()}
    coco = records["coco"]
    assert reports["coco"].tables == {"train": coco["train"] // 5 + coco["restval"] // 5,
                                      "val": coco["val"] // 5, "test": coco["test"] // 5}
    vqa = records["vqa"]
    assert reports["vqa"].tables["train2014"] == vqa["train2014"] and reports["vqa"].tables["val2014"] == vqa["val2014"]
    karpathy = sum(v for k, v in reports["vqa"].tables.items() if k.startswith("karpathy_"))
    assert karpathy == vqa["train2014"] + vqa["val2014"]  # every question lands in exactly one Karpathy split
    gqa = records["gqa"]
    assert reports["gqa"].tables == {"train": gqa["train"], "valid": gqa["val"], "testdev": gqa["testdev"]}
    assert reports["nlvr2"].tables == records["nlvr2"]
    tvqa = records["tvqa"]
    assert reports["tvqa"].tables == {"train": tvqa["train"], "val": tvqa["val"], "test_public": tvqa["test_public"]}
    for d in ("how2qa", "tvc", "yc2c"):
        expected = {f"{s}_release" if s != "test_public" else "test_public_release": n for s, n in records[d].items()}
        assert reports[d].tables == expected, d
    for d, report in reports.items():
        assert report.media_missing == 0 and report.media_referenced > 0, d


def test_tables_carry_the_generators_content(prepared, mirror):
    root, _, _, _, _ = prepared
    nlvr2 = read_table(root / "tables" / "nlvr2" / "dev.arrow")
    assert sum(nlvr2.column("label").to_pylist()) == _counts(mirror)["nlvr2"]["dev"]["true_labels"]
    raw_dev = [json.loads(line) for line in (mirror / "nlvr2" / "dev.json").read_text().splitlines() if line]
    assert nlvr2.column("sentence").to_pylist() == [r["sentence"] for r in raw_dev]
    how2 = read_table(root / "tables" / "how2qa" / "val_release.arrow")
    mapping = json.loads((mirror / "how2qa" / "how2_vid_mapping.json").read_text())
    assert how2.column("media_id").to_pylist() == [mapping[v] for v in how2.column("vid_name").to_pylist()]
    media = read_table(root / "tables" / "tvqa" / "media.arrow")
    for rel, sha in zip(media.column("rel_path").to_pylist(), media.column("sha256").to_pylist(), strict=True):
        assert hashlib.sha256((root / "raw" / rel).read_bytes()).hexdigest() == sha
    # The mirror's SHA256SUMS agrees with the generator's manifest.
    sums = parse_sha256sums((mirror / "vqa" / "SHA256SUMS").read_text(), "SHA256SUMS")
    listed = {Path(f["path"]).name: f["sha256"] for f in json.loads((mirror / "manifest.json").read_text())["files"]
              if f["path"].startswith("vqa/")}
    assert sums == listed


def test_missing_manual_media_are_listed_not_dropped(mirror, tmp_path):
    media = tmp_path / "user_videos"
    shutil.copytree(mirror / "yc2c" / "videos", media / "videos")
    removed = sorted((media / "videos").glob("*.mp4"))[0]
    removed.unlink()
    fetch_dataset("yc2c", tmp_path / "data", mirror=f"file://{mirror}", progress=False, media_from=media)
    report = prepare_dataset("yc2c", tmp_path / "data")
    assert report.media_missing == 1 and removed.stem in report.missing_examples
    missing_list = (tmp_path / "data" / "tables" / "yc2c" / "missing_media.txt").read_text().split()
    assert missing_list == [removed.stem]
    total = sum(report.tables.values())
    assert total == sum(c["records"] for c in _counts(mirror)["yc2c"].values())  # rows kept, reported


def test_cli_download_and_prepare(mirror, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["download", "nlvr2", "--root", str(tmp_path), "--mirror", f"file://{mirror}"])
    assert r.exit_code == 0, r.output
    assert "NONE present" in r.output and "goo.gl/forms" in r.output  # no images supplied: say how to get them
    r = runner.invoke(app, ["prepare", "nlvr2", "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "coverage 0.0%" in r.output and "missing_media.txt" in r.output
    r = runner.invoke(app, ["download", "imagenet", "--root", str(tmp_path)])
    assert r.exit_code == 1 and "unknown dataset 'imagenet'" in r.output
    r = runner.invoke(app, ["prepare", "gqa", "--root", str(tmp_path)])
    assert r.exit_code == 1 and "vlpet download gqa" in r.output
