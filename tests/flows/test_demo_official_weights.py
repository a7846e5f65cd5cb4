"""The demo with official weights (``vlpet demo --weights official``), against a loopback hub serving small
generated checkpoints under the real repo names of OpenAI's RN101 and ViT-B/32 and of ``facebook/bart-base``:
every weights file is downloaded once, and the report, stores and runs say exactly which weights were used."""

from __future__ import annotations

import hashlib

import pytest

from tests.hub_server import CLIP_FILE, COMMIT, OPENAI_REPOS, HubServer, tiny_clip_checkpoints, use_hub


@pytest.mark.slow
def test_official_demo_downloads_and_reports_its_weights(tmp_path, monkeypatch, tokenizers, prefect_ephemeral):
    import torch
    from transformers import BartForConditionalGeneration

    from flows.end_to_end import end_to_end_flow
    from vlpet.backbones import architecture_config

    bart = tmp_path / "bart-repo"
    torch.manual_seed(5)
    BartForConditionalGeneration(architecture_config("tiny-bart", vocab_size=len(tokenizers["bart"]))
                                 ).save_pretrained(bart)
    tokenizers["bart"].save_pretrained(bart)
    with tiny_clip_checkpoints(monkeypatch) as clip, HubServer() as hub:
        for arch, data in clip.items():
            hub.add_file(OPENAI_REPOS[arch], CLIP_FILE, data)
        hub.add_repo("facebook/bart-base", {p.name: p.read_bytes() for p in bart.iterdir() if p.is_file()})
        use_hub(monkeypatch, hub, tmp_path / "hf")
        report = end_to_end_flow(workdir=str(tmp_path / "work"), scale="tiny", device="cpu", weights="official")
        assert all(hub.requests_for(repo, CLIP_FILE) >= 2 for repo in OPENAI_REPOS.values())
    sha = {arch: hashlib.sha256(data).hexdigest() for arch, data in clip.items()}
    w = report["weights"]
    assert w["choice"] == "official"
    assert w["clip"] == {"images": f"RN101-quickgelu:sha256:{sha['RN101']}",
                         "videos": f"ViT-B-32-quickgelu:sha256:{sha['ViT-B-32']}"}
    bart_sha = hashlib.sha256((bart / "model.safetensors").read_bytes()).hexdigest()
    for kind in ("images", "videos"):
        assert w["backbone"][kind]["source"] == f"hf:facebook/bart-base@{COMMIT}"
        assert w["backbone"][kind]["sha256"] == bart_sha and w["backbone"][kind]["pretrained"] is True
        assert report["feature_stores"][kind]["random_init_weights"] is False
    assert any("OpenAI's weights" in n for n in report["notes"]) and not any("RANDOM" in n for n in report["notes"])
    md = (tmp_path / "work" / "report.md").read_text()
    assert "--weights official" in md and sha["RN101"] in md
