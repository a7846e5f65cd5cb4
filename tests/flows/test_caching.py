"""Stage caching: keys from content, parameters and code; results checked against their outputs; and the
cached pipeline (download → prepare → extract → build) doing no work when unchanged and only the necessary
work after one image changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.caching import FileHasher, StageCache, code_version, content_key, tree_digest
from flows.stages.core import Stage, StageOutput, StageParams, execute

EXTRACTOR = "clip-vit-b32-grid"  # the fastest grid extractor on a CPU (--weights random: no files here)
# CLIP models of tiny depth and real shapes (conftest)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("tiny_clip")]


def test_content_key_depends_on_stage_params_and_inputs():
    base = content_key("prepare", {"dataset": "coco"}, {"raw": "a" * 64})
    assert base == content_key("prepare", {"dataset": "coco"}, {"raw": "a" * 64})
    assert base != content_key("prepare", {"dataset": "gqa"}, {"raw": "a" * 64})
    assert base != content_key("prepare", {"dataset": "coco"}, {"raw": "b" * 64})
    assert base != content_key("download", {"dataset": "coco"}, {"raw": "a" * 64})
    with pytest.raises(TypeError, match="input 'raw'"):
        content_key("prepare", {}, {"raw": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="stage name"):
        content_key("a/b", {}, {})


def test_code_version_covers_helper_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "cvpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    v1 = code_version("cvpkg")
    assert v1 == code_version("cvpkg") and len(v1) == 64
    (pkg / "helpers.py").write_text("X = 2\n")  # a helper, not the stage function: still a new version
    assert code_version("cvpkg") != v1
    assert code_version("features") != code_version("features", "pipelines")
    with pytest.raises(ValueError, match="not an importable package"):
        code_version("no_such_package_xyz")


def test_file_hasher_memo_and_tree_digest(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"a")
    (d / "sub" / "b.bin").write_bytes(b"b")
    (d / ".hidden").write_bytes(b"ignored")
    hasher = FileHasher(tmp_path / "memo.sqlite")
    first = hasher.tree(d)
    assert first == tree_digest(d) == hasher.tree(d)
    (d / ".hidden").write_bytes(b"still ignored")
    assert hasher.tree(d) == first
    (d / "sub" / "b.bin").write_bytes(b"B")
    assert hasher.tree(d) != first
    # The memo is keyed by (path, size, mtime_ns): a stale-looking entry for the same stat is trusted...
    p = d / "a.bin"
    st = p.stat()
    hasher.remember(p, "0" * 64)
    assert hasher.file(p) == "0" * 64
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # ...and a touched file is re-hashed
    assert hasher.file(p) != "0" * 64
    with pytest.raises(FileNotFoundError, match="missing"):
        hasher.digest(d / "missing")


class _ToyParams(StageParams):
    root: str
    p: int


class _Toy(Stage[_ToyParams]):
    """Writes ``<root>/out.txt``; input ``x`` is a fixed content hash (the executor adds the code version)."""

    name = "toy"
    Params = _ToyParams
    packages = ("flows",)
    calls: list[int] = []  # noqa: RUF012

    def inputs(self, params, hasher):
        return {"x": "1" * 64}

    def run(self, params, ctx):
        self.calls.append(1)
        out = ctx.root / "out.txt"
        out.write_text(f"run {len(self.calls)}")
        return StageOutput({"value": 42}, [str(out)])


def test_run_cached_hits_and_invalidates_on_output_change(tmp_path):
    """Through the stage executor (the one user of the cache)."""
    cache = StageCache(tmp_path)
    out = tmp_path / "out.txt"
    toy = _Toy()
    calls = _Toy.calls
    calls.clear()

    def run_cached(p):
        r = execute(toy, {"root": str(tmp_path), "p": p})
        return r, r["cache_hit"]

    r1, hit1 = run_cached(1)
    r2, hit2 = run_cached(1)
    assert (hit1, hit2, len(calls)) == (False, True, 1) and r2["value"] == 42
    assert r1["outputs"] == {str(out.resolve()): cache.hasher.file(out)}
    assert (tmp_path / ".vlpet" / "cache" / "toy" / f"{r1['cache_key']}.json").is_file()
    out.write_text("edited by hand")  # an output changed: the record no longer vouches for it
    _, hit3 = run_cached(1)
    out.unlink()
    _, hit4 = run_cached(1)
    _, hit5 = run_cached(2)
    assert (hit3, hit4, hit5, len(calls)) == (False, False, False, 4)
    # A torn cache file is a miss, never an error.
    path = cache.path("toy", r1["cache_key"])
    path.write_text("{not json")
    assert cache.get("toy", r1["cache_key"]) is None


# ------------------------------------------------------------------------------------------- the pipeline


def _jpeg(path: Path, seed: int, size=(64, 48)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


@pytest.fixture(scope="module")
def synth_mirror(tmp_path_factory):
    from pipelines.fetch import write_sha256sums
    from pipelines.synth import generate

    mirror = tmp_path_factory.mktemp("synth") / "mirror"
    generate(mirror, scale="tiny", seed=0)
    for source in ("coco", "gqa"):
        write_sha256sums(mirror / source)
    return mirror


def _pipeline(data: Path, mirror: Path, spy: list) -> dict:
    from flows.stages import run_build, run_download, run_extract, run_prepare

    """COCO end to end (its own store); GQA, the unrelated dataset, downloaded and prepared (extracting its 48
    images too would double the test's time without testing anything new)."""
    out = {}
    for ds in ("coco", "gqa"):
        d = run_download(ds, data, mirror=mirror.resolve().as_uri(), media_from=mirror / ds)
        p = run_prepare(ds, data)
        out[ds] = {"download": d, "prepare": p}
    e = run_extract(out["coco"]["prepare"]["media_index"], data / "stores" / "coco", extractor=EXTRACTOR,
                    device="cpu", workers=0, media_root=str(data / "raw"), root=data, weights="random")
    b = run_build("coco", data / "stores" / "coco", data, splits=["train", "val"])
    out["coco"].update(extract=e, build=b)
    return out


def test_pipeline_reruns_only_what_changed(tmp_path, synth_mirror, monkeypatch):
    import features.engine as engine

    calls: list[int] = []
    real_extract = engine.extract

    def spy(*args, **kwargs):
        report = real_extract(*args, **kwargs)
        calls.append(report.extracted)
        return report

    monkeypatch.setattr(engine, "extract", spy)
    data = tmp_path / "data"
    first = _pipeline(data, synth_mirror, calls)
    assert calls == [48]  # tiny scale: 48 COCO images
    assert not any(s["cache_hit"] for ds in first.values() for s in ds.values() if "cache_hit" in s)
    assert first["coco"]["download"]["synthetic_data"] is True
    assert first["coco"]["extract"]["random_init"] is True

    calls.clear()
    second = _pipeline(data, synth_mirror, calls)  # unchanged: every stage hits, no extraction at all
    assert calls == []
    assert all(second[ds][s]["cache_hit"] for ds in ("coco", "gqa") for s in ("download", "prepare"))
    assert second["coco"]["extract"]["cache_hit"] and second["coco"]["build"]["hits"] == 2
    assert second["coco"]["extract"]["snapshot"] == first["coco"]["extract"]["snapshot"]

    # Change one COCO image's bytes in the raw store: COCO's prepare, extract (1 image) and build re-run;
    # GQA's stages, and COCO's download (its archives are unchanged), still hit.
    images = sorted((data / "raw" / "coco").rglob("*.jpg"))
    _jpeg(images[0], seed=123)
    calls.clear()
    third = _pipeline(data, synth_mirror, calls)
    assert calls == [1]
    assert third["coco"]["extract"]["extracted"] == 1 and third["coco"]["extract"]["reused"] == 47
    assert third["coco"]["download"]["cache_hit"] is True
    assert third["coco"]["prepare"]["cache_hit"] is False and third["coco"]["extract"]["cache_hit"] is False
    assert third["coco"]["build"]["hits"] == 0
    assert third["coco"]["build"]["snapshot"] != first["coco"]["build"]["snapshot"]
    assert third["gqa"]["download"]["cache_hit"] and third["gqa"]["prepare"]["cache_hit"]

    # Lineage links a rebuilt task table back to the changed raw folder and the downloaded files.
    from flows.lineage import LineageStore

    store = LineageStore(data)
    rec = store.find(third["coco"]["build"]["splits"]["train"]["path"])
    assert rec is not None and rec.kind == "task-table"
    assert rec.flags == {"synthetic_data": True, "random_init_weights": True}
    tree = store.tree(rec.id)
    kinds = set()

    def walk(node):
        kinds.add(node.get("kind"))
        for child in node["inputs"]:
            walk(child)

    walk(tree)
    assert {"task-table", "table", "features", "media-index", "raw"} <= kinds
    assert json.loads(json.dumps(tree))  # plain JSON


def test_prepare_without_download_names_the_missing_folder(tmp_path):
    from flows.stages import run_prepare

    with pytest.raises(FileNotFoundError, match=r"raw/coco does not exist"):
        run_prepare("coco", tmp_path)
