"""Official CLIP weights from a (loopback) Hugging Face hub: downloaded on first use, recorded, cached, verified.

``tests.hub_server.HubServer`` serves a small generated checkpoint under the real repo name of OpenAI's ViT-B/32
(``timm/vit_base_patch32_clip_224.openai``); open_clip's ``ViT-B-32`` architecture is shrunk for these tests
(one vision block, a tiny text tower) so the file is a few MB while the extractor's outputs keep their shapes.
HF_ENDPOINT points at the server, HF_HOME at an empty folder.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from tests.hub_server import CLIP_FILE, COMMIT, OPENAI_REPOS, HubServer, tiny_clip_checkpoints, use_hub

REPO, FILE = OPENAI_REPOS["ViT-B-32"], CLIP_FILE


@pytest.fixture(scope="module")
def tiny_checkpoint():
    """(bytes of a safetensors checkpoint of the shrunk ViT-B-32, its sha256); open_clip's configs are patched
    for the whole module."""
    with pytest.MonkeyPatch.context() as mp, tiny_clip_checkpoints(mp) as files:
        data = files["ViT-B-32"]
        yield data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub(tiny_checkpoint):
    with HubServer() as server:
        server.add_file(REPO, FILE, tiny_checkpoint[0])
        yield server


def _media(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"m{k}.jpg")
    return folder


def _extract(media, store, *extra):
    return CliRunner().invoke(app, ["extract", "--media", str(media), "--store", str(store), "--extractor",
                                    "clip-vit-b32-grid", "--device", "cpu", "--workers", "0", *extra])


def _latest_meta(store):
    from features.store import FeatureStore

    return FeatureStore.open(store).latest().metadata


def test_first_use_downloads_records_sha256_then_cache_serves_offline(tmp_path, monkeypatch, hub, tiny_checkpoint):
    cache = use_hub(monkeypatch, hub, tmp_path / "hf")
    media = _media(tmp_path / "media")
    res = _extract(media, tmp_path / "store")  # no weights option: official weights
    assert res.exit_code == 0, res.output
    assert hub.requests_for(REPO, FILE) >= 2  # HEAD + GET: the server saw the download
    meta = _latest_meta(tmp_path / "store")
    ident = meta["weights_identity"]
    assert meta["random_init"] is False and ident["random_init"] is False
    assert ident["sha256"] == tiny_checkpoint[1]  # the served file's bytes, hashed independently
    assert (ident["hub_repo"], ident["hub_file"], ident["hub_revision"]) == (REPO, FILE, COMMIT)
    assert meta["weights"] == f"ViT-B-32-quickgelu:sha256:{tiny_checkpoint[1]}"
    assert (cache / "models--timm--vit_base_patch32_clip_224.openai" / "blobs" / tiny_checkpoint[1]).is_file()
    assert "random-init" not in res.output

    hub.stop()  # second run: the server is gone, the cache answers (online mode, then offline mode)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(media / "m9.jpg")  # new work: the model is built again
    again = _extract(media, tmp_path / "store")
    assert again.exit_code == 0, again.output
    assert "1 extracted" in again.output
    use_hub(monkeypatch, None, tmp_path / "hf")
    offline = _extract(media, tmp_path / "store2")
    assert offline.exit_code == 0, offline.output
    assert _latest_meta(tmp_path / "store2")["weights_identity"]["sha256"] == tiny_checkpoint[1]


def test_offline_and_uncached_fails_with_the_way_forward_and_writes_nothing(tmp_path, monkeypatch, tiny_checkpoint):
    cache = use_hub(monkeypatch, None, tmp_path / "empty-hf")
    media = _media(tmp_path / "media")
    res = _extract(media, tmp_path / "store")
    assert res.exit_code == 2
    out = res.output
    assert f"{REPO} (file {FILE})" in out and str(cache) in out
    assert "vlpet weights fetch clip-vit-b32-grid" in out and "--pretrained FILE" in out
    assert "Traceback" not in out
    assert not (tmp_path / "store").exists()  # nothing written
    assert not list(cache.rglob("*.safetensors"))


def test_extract_features_flow_downloads_official_weights(tmp_path, monkeypatch, hub, tiny_checkpoint,
                                                          prefect_ephemeral):
    from flows.prefect_flows import extract_features_flow

    use_hub(monkeypatch, hub, tmp_path / "hf")
    media = _media(tmp_path / "media")
    out = extract_features_flow(media=str(media), store=str(tmp_path / "store"), extractor="clip-vit-b32-grid",
                                device="cpu", workers=0, root=str(tmp_path))  # no weights parameter
    assert out["random_init"] is False and out["extracted"] == 2
    assert hub.requests_for(REPO, FILE) >= 2
    assert _latest_meta(tmp_path / "store")["weights_identity"]["sha256"] == tiny_checkpoint[1]
    lineage = [json.loads(line) for line in (tmp_path / ".vlpet" / "lineage.jsonl").read_text().splitlines()]
    features = [r for r in lineage if r.get("kind") == "features"]
    assert features and features[-1]["extra"]["weights_identity"]["hub_repo"] == REPO
    assert features[-1]["flags"]["random_init_weights"] is False


def test_random_weights_by_name_are_recorded_and_never_mix_with_official(tmp_path, monkeypatch, hub):
    use_hub(monkeypatch, hub, tmp_path / "hf")
    media = _media(tmp_path / "media")
    res = _extract(media, tmp_path / "store", "--weights", "random")
    assert res.exit_code == 0, res.output
    assert hub.requests_for(REPO, FILE) == 0  # random weights need no download
    assert _latest_meta(tmp_path / "store")["random_init"] is True and "random-init" in res.output
    other = _extract(media, tmp_path / "store")  # official weights into a store of random-weight features
    assert other.exit_code == 2
    assert "holds features made with weights ViT-B-32-quickgelu:random-init" in other.output
    assert _latest_meta(tmp_path / "store")["random_init"] is True  # the store is unchanged
    bad = _extract(media, tmp_path / "store3", "--weights", "pretrained")
    assert bad.exit_code == 2 and "official, random" in bad.output and not (tmp_path / "store3").exists()


def test_cut_download_is_retried_and_corrupt_bytes_are_refused(tmp_path, monkeypatch, tiny_checkpoint):
    from vlpet.hub import WeightsUnavailableError, hub_file

    data = tiny_checkpoint[0]
    with HubServer() as server:
        # the first GET (request 2, after the HEAD) dies a third of the way through
        server.add_file("org/cut", FILE, data, drop_after=len(data) // 3, drop_times=2)
        server.add_file("org/bad", FILE, data[::-1], corrupt=True)  # bytes differ from the published sha256
        cache = use_hub(monkeypatch, server, tmp_path / "hf")
        got = hub_file("org/cut", FILE)
        assert got.sha256 == hashlib.sha256(data).hexdigest() == tiny_checkpoint[1]
        assert hashlib.sha256(open(got.path, "rb").read()).hexdigest() == got.sha256
        statuses = server.stats(server.path("org/cut", FILE)).statuses
        assert len(statuses) >= 3  # HEAD, the cut GET, the retry
        with pytest.raises(WeightsUnavailableError, match="the hub published"):
            hub_file("org/bad", FILE)
    assert not list(cache.rglob("*.incomplete"))  # no partial file left behind
    bad_repo = cache / "models--org--bad"
    assert not [p for p in bad_repo.rglob("*") if p.is_file() or p.is_symlink()
                if "blobs" in p.parts or "snapshots" in p.parts]  # the corrupt file is not kept to be trusted later
    use_hub(monkeypatch, None, tmp_path / "hf")  # offline afterwards: still no trusted copy of the bad file
    with pytest.raises(WeightsUnavailableError, match="not in the cache"):
        hub_file("org/bad", FILE)


def test_weights_fetch_and_list(tmp_path, monkeypatch, hub, tiny_checkpoint):
    use_hub(monkeypatch, hub, tmp_path / "hf")
    runner = CliRunner()
    before = json.loads(runner.invoke(app, ["weights", "list", "--json"]).output)
    rows = {(r["name"], r["file"]): r for r in before["weights"]}
    assert rows[("clip-vit-b32-grid", FILE)]["repo_id"] == REPO and rows[("clip-vit-b32-grid", FILE)]["cached"] is False
    assert rows[("clip-rn101-grid", FILE)]["repo_id"] == "timm/resnet101_clip.openai"
    assert rows[("bart-base", "model.safetensors")]["repo_id"] == "facebook/bart-base"
    assert rows[("t5-base", "config.json")]["repo_id"] == "google-t5/t5-base"
    res = runner.invoke(app, ["weights", "fetch", "clip-vit-b32-grid"])
    assert res.exit_code == 0, res.output
    assert tiny_checkpoint[1] in res.output and f"{len(tiny_checkpoint[0]) / 2**20:.1f} MiB" in res.output
    after = json.loads(runner.invoke(app, ["weights", "list", "--json"]).output)
    assert {(r["name"], r["file"]): r["cached"] for r in after["weights"]}[("clip-vit-b32-grid", FILE)] is True
    unknown = runner.invoke(app, ["weights", "fetch", "gpt2"])
    assert unknown.exit_code == 2 and "known names" in unknown.output


def test_pickled_extractor_rebuilds_the_same_official_weights(tmp_path, monkeypatch, hub, tiny_checkpoint):
    """Decode workers and Dask shards rebuild from the same choice: official weights, from the cache."""
    import pickle

    from features.extractors import get_extractor

    use_hub(monkeypatch, hub, tmp_path / "hf")
    ex = get_extractor("clip-vit-b32-grid", device="cpu")
    key = ex.identity.key()
    clone = pickle.loads(pickle.dumps(ex))
    hub.stop()
    assert clone.weights == "official" and clone.identity.key() == key
