"""NLVR2 URL crawl: images fetched from a loopback server are kept only when their published hash matches."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.fetch import fetch_dataset, write_sha256sums
from pipelines.nlvr2_crawl import crawl_nlvr2_images
from pipelines.synth import generate
from tests.pipelines.loopback import LoopbackServer


def test_crawl_verifies_hashes_and_reports_dead_and_wrong_images(tmp_path):
    synth = tmp_path / "synth"
    generate(synth, scale="tiny", seed=0)
    write_sha256sums(synth / "nlvr2")
    images = {p.name: p.read_bytes() for p in (synth / "nlvr2" / "images" / "dev").glob("*.png")}
    names = sorted(images)
    dead, wrong = names[0], names[1]
    with LoopbackServer({f"img/{n}": b for n, b in images.items() if n != dead}) as server:
        server.add(f"img/{wrong}", images[names[2]])  # a different picture under this name
        dev = synth / "nlvr2" / "dev.json"
        records = [json.loads(line) for line in dev.read_text().splitlines() if line]
        for r in records:  # point the published URLs at the loopback server
            r["left_url"] = server.url(f"img/{r['left_url'].rsplit('/', 1)[1]}")
            r["right_url"] = server.url(f"img/{r['right_url'].rsplit('/', 1)[1]}")
        dev.write_text("".join(json.dumps(r) + "\n" for r in records))
        write_sha256sums(synth / "nlvr2")
        root = tmp_path / "data"
        fetch_dataset("nlvr2", root, mirror=synth.resolve().as_uri(), progress=False)
        report = crawl_nlvr2_images(root, "dev", concurrency=4)
        again = crawl_nlvr2_images(root, "dev", concurrency=4)
    assert report.wanted == len(names)
    assert set(report.failed) == {dead, wrong}
    assert "download failed" in report.failed[dead] and "average hash" in report.failed[wrong]
    assert report.fetched == len(names) - 2
    kept = {p.name for p in (root / "raw" / "nlvr2" / "images" / "dev").glob("*.png")}
    assert kept == set(names) - {dead, wrong}  # nothing unverified is kept
    assert again.present == len(names) - 2 and again.fetched == 0
    for name in kept:
        assert (root / "raw" / "nlvr2" / "images" / "dev" / name).read_bytes() == images[name]
    assert Path(root / "raw" / "nlvr2" / "images" / "dev").is_dir()
