"""Feature store: corruption detection (verify) and the ``store`` CLI (info, verify, gc)."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import json
import os

import typer
from typer.testing import CliRunner

from .test_store_support import extract, write_media

from features.cli import register
from features.store import FeatureStore


def _flip(path, offset=None):
    os.chmod(path, 0o644)  # committed files are read-only
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_verify_detects_a_flipped_byte_and_names_the_segment(tmp_path):
    media = tmp_path / "media"
    write_media(media, [f"img{i}" for i in range(10)])
    snap = extract(tmp_path / "s", media, flush_rows=4)
    store = FeatureStore.open(tmp_path / "s")
    assert store.verify().ok
    victim = sorted(snap.segments)[1]
    _flip(store.layout.segment(victim))
    report = store.verify()
    assert not report.ok and any(victim in p and "checksum mismatch" in p for p in report.problems)
    res = CliRunner().invoke(_app(), ["store", "verify", str(tmp_path / "s")])
    assert res.exit_code == 1 and victim in res.output and "CORRUPT" in res.output


def test_verify_detects_index_and_missing_segment_damage(tmp_path):
    media = tmp_path / "media"
    write_media(media, [f"img{i}" for i in range(6)])
    snap = extract(tmp_path / "s", media, flush_rows=4)
    store = FeatureStore.open(tmp_path / "s")
    _flip(snap.path / "index.arrow", offset=200)
    problems = store.verify(snap.id).problems
    assert any("index.arrow checksum mismatch" in p for p in problems)
    manifest = snap.path / "manifest.json"
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace('"created_utc": "2', '"created_utc": "1'))  # still valid JSON
    assert any("manifest_digest" in p for p in store.verify(snap.id).problems)
    write_media(media, ["extra"])
    snap2 = extract(tmp_path / "s", media)
    gone = sorted(snap2.segments)[0]
    os.unlink(store.layout.segment(gone))
    problems = store.verify(snap2.id).problems
    assert any(gone in p and "missing" in p for p in problems)


def test_cli_info_verify_gc(tmp_path):
    media, path = tmp_path / "media", tmp_path / "s"
    write_media(media, ["a", "b", "bad1"])
    s1 = extract(path, media)
    write_media(media, ["c"])
    (media / "a.jpg").unlink()
    s2 = extract(path, media)
    write_media(media, ["d"])
    s3 = extract(path, media)
    runner, app = CliRunner(), _app()

    res = runner.invoke(app, ["store", "info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["latest"] == s3.id and [s["id"] for s in doc["snapshots"]] == [s1.id, s2.id, s3.id]
    assert doc["counts"]["ok"] == 3 and doc["counts"]["error"] == 1 and doc["size_bytes"] > 0
    assert doc["spec"]["extractor"] == "fake-grid" and doc["weights"] == "sha256:fake"

    res = runner.invoke(app, ["store", "info", str(path)])
    assert res.exit_code == 0 and "fake-grid" in res.output and s3.id in res.output and "ok 3, error 1" in res.output

    res = runner.invoke(app, ["store", "verify", str(path)])
    assert res.exit_code == 0 and "OK" in res.output
    res = runner.invoke(app, ["store", "verify", str(path), "--snapshot", s1.id])
    assert res.exit_code == 0
    res = runner.invoke(app, ["store", "verify", str(path), "--snapshot", "999999-nope"])
    assert res.exit_code == 2 and "not found" in res.output

    res = runner.invoke(app, ["store", "gc", str(path), "--keep", s1.id, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["removed_snapshots"] == [s2.id]
    assert FeatureStore.open(path).snapshot_ids() == [s1.id, s3.id]
    res = runner.invoke(app, ["store", "gc", str(path)])
    assert res.exit_code == 0 and "removed 1 snapshot" in res.output
    assert FeatureStore.open(path).snapshot_ids() == [s3.id]
    assert FeatureStore.open_reader(path).media_ids == ["b", "c", "d"]

    res = runner.invoke(app, ["store", "info", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "not a feature store" in res.output
