"""Feature store: the Zarr v3 export (``vlpet store export --format zarr``), read without this project by
dask and xarray, and its bit-identical import back into a store (local paths and fsspec URLs)."""
# ruff: noqa: I001  (the support import must come first: it makes `features` the project package)

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from .test_store_support import IMAGE_SPEC, VIDEO_SPEC, extract, fake_features, write_media

from features.cli import register
from features.store import CorruptionError, FeatureStore, StoreError
from features.store.zarr_view import export_zarr, import_zarr

# Run in a fresh interpreter where the project's packages cannot be imported: the export must stand alone.
OUTSIDE_READER = textwrap.dedent("""
    import json, sys, warnings
    for name in ("features", "pipelines", "vlpet", "flows"):
        sys.modules[name] = None  # any import of the project now fails
    import dask.array as da
    import xarray as xr
    warnings.simplefilter("error")
    out = sys.argv[1]
    feats = da.from_zarr(out, component="features")
    ds = xr.open_zarr(out)
    q = xr.open_zarr(out, group="quarantine")
    print(json.dumps({
        "dask_shape": list(feats.shape), "dask_chunks": [list(c[:1]) for c in feats.chunks],
        "dask_sum": float(feats.astype("float64").sum().compute()),
        "xr_dims": dict(ds.sizes), "media_id": [str(m) for m in ds.media_id.values],
        "first": ds.features[0].values.astype("float64").tolist(),
        "q_media_id": [str(m) for m in q.media_id.values], "q_reason": [str(r) for r in q.reason.values],
        "extractor": ds.attrs["spec"]["extractor"],
    }))
""")


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    base = tmp_path_factory.mktemp("zarr")
    names = [f"img{i:02d}" for i in range(7)] + ["bad01"]
    write_media(base / "media", names)
    snap = extract(base / "store", base / "media", flush_rows=3)
    return base, snap


def _expected(base, names):
    return {n: fake_features((base / "media" / f"{n}.jpg").read_bytes(), IMAGE_SPEC) for n in names}


def test_export_is_read_by_dask_and_xarray_without_the_project(image_store, tmp_path):
    base, _ = image_store
    out = tmp_path / "feat.zarr"
    export_zarr(base / "store", out)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", OUTSIDE_READER, str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    ok = [f"img{i:02d}" for i in range(7)]
    want = _expected(base, ok)
    assert got["dask_shape"] == [7, 49, 64] and got["dask_chunks"] == [[1], [49], [64]]  # one chunk per sample
    assert got["dask_sum"] == pytest.approx(sum(float(want[n].astype(np.float64).sum()) for n in ok), rel=1e-9)
    assert got["xr_dims"] == {"sample": 7, "d0": 49, "d1": 64}
    assert got["media_id"] == ok
    assert np.array_equal(np.array(got["first"]), want["img00"].astype(np.float64))
    assert got["q_media_id"] == ["bad01"] and "not a valid image" in got["q_reason"][0]
    assert got["extractor"] == "fake-grid"


def test_round_trip_is_bit_identical_local_and_memory_url(image_store, tmp_path):
    base, snap = image_store
    src = FeatureStore.open_reader(base / "store")
    for i, target in enumerate([str(tmp_path / "a.zarr"), f"memory://vlpet-test-{os.getpid()}/b.zarr"]):
        export_zarr(base / "store", target)
        back = import_zarr(target, tmp_path / f"store{i}")
        assert back.content_digest() == snap.content_digest()
        r = FeatureStore.open_reader(tmp_path / f"store{i}")
        assert r.media_ids == src.media_ids and r.errors() == src.errors()
        for m in src.media_ids:
            a, b = src.get(m), r.get(m)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        assert FeatureStore.open(tmp_path / f"store{i}").verify().ok
    with pytest.raises(StoreError, match="already exists"):
        export_zarr(base / "store", tmp_path / "a.zarr")


def test_ragged_video_round_trip_file_url(tmp_path):
    write_media(tmp_path / "v", ["c1", "c2", "c3", "c4"], ext=".mp4")
    snap = extract(tmp_path / "s", tmp_path / "v", VIDEO_SPEC)
    url = "file://" + str(tmp_path / "v.zarr")
    export_zarr(tmp_path / "s", url)
    import zarr

    g = zarr.open_group(str(tmp_path / "v.zarr"), mode="r")
    want = [fake_features((tmp_path / "v" / f"{n}.mp4").read_bytes(), VIDEO_SPEC) for n in ("c1", "c2", "c3", "c4")]
    offsets = g["frame_offsets"][:]
    assert offsets.tolist() == np.cumsum([0] + [len(w) for w in want]).tolist()
    assert np.array_equal(g["features"][int(offsets[1]):int(offsets[2])], want[1])
    back = import_zarr(url, tmp_path / "s2")
    assert back.content_digest() == snap.content_digest()
    r = FeatureStore.open_reader(tmp_path / "s2")
    assert [r.get(m).tobytes() for m in r.media_ids] == [w.tobytes() for w in want]


def test_import_refuses_tampered_or_incomplete_exports(image_store, tmp_path):
    import zarr

    base, _ = image_store
    out = tmp_path / "t.zarr"
    export_zarr(base / "store", out)
    g = zarr.open_group(str(out), mode="r+")
    x = g["features"][3]
    x[0, 0] += 1
    g["features"][3] = x
    with pytest.raises(CorruptionError, match="img03"):
        import_zarr(out, tmp_path / "s1")
    assert not FeatureStore.open(tmp_path / "s1").snapshots()  # nothing committed
    g.attrs["complete"] = False
    with pytest.raises(StoreError, match="incomplete"):
        import_zarr(out, tmp_path / "s2")


def test_cli_export_and_import(image_store, tmp_path):
    base, snap = image_store
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["store", "export", "--format", "zarr", str(base / "store"), str(tmp_path / "c.zarr")])
    assert res.exit_code == 0, res.output
    assert "7 samples, 1 quarantined" in res.output
    res = runner.invoke(app, ["store", "import", str(tmp_path / "c.zarr"), str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert FeatureStore.open(tmp_path / "s").latest().content_digest() == snap.content_digest()
    res = runner.invoke(app, ["store", "export", "--format", "hdf5", str(base / "store"), str(tmp_path / "d")])
    assert res.exit_code == 2 and "unknown export format" in res.output
