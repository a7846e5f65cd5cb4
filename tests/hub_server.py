"""A loopback Hugging Face hub for tests: ``tests.pipelines.loopback.LoopbackServer`` answering the hub's
file-resolve requests, and the environment that points ``huggingface_hub`` at it.

``huggingface_hub`` (2.x) resolves a file with ``HEAD {endpoint}/{repo}/resolve/{revision}/{file}`` and reads
``X-Repo-Commit`` (the commit), ``X-Linked-Etag``/``ETag`` (an LFS file's sha256, a git file's blob sha1) and
``X-Linked-Size``/``Content-Length``; then ``GET`` the same URL, resuming with ``Range`` after a cut. Every file
is served under both ``main`` and its commit hash, since later calls pin the commit.

Usage::

    with HubServer() as hub:
        hub.add_file("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors", data)
        use_hub(monkeypatch, hub, tmp_path / "hf")   # HF_ENDPOINT -> hub, empty HF_HOME, online
        ...
        hub.stats(hub.path("timm/...", "open_clip_model.safetensors")).requests

``use_hub(monkeypatch, None, home)`` is "offline, with this (maybe empty) cache". ``huggingface_hub`` reads its
settings once at import, so besides the environment (for subprocesses) its ``constants`` are patched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.pipelines.loopback import LoopbackServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# open_clip's architectures shrunk for tests (the extractors' output shapes stay; tests/conftest.py), installed under
# the real names by ``tiny_clip_checkpoints``, so a checkpoint is a few tens of MB instead of 0.5 GB.
# open_clip's hub entries of OpenAI's weights, by architecture.
OPENAI_REPOS = {"ViT-B-32": "timm/vit_base_patch32_clip_224.openai", "RN101": "timm/resnet101_clip.openai"}
CLIP_FILE = "open_clip_model.safetensors"


@contextmanager
def tiny_clip_checkpoints(monkeypatch: Any) -> Iterator[dict[str, bytes]]:
    """open_clip's RN101 and ViT-B-32 replaced by their tiny versions (``monkeypatch``); yields a safetensors
    checkpoint (fp16, seeded) of each, by architecture name, to serve under OpenAI's repo names."""
    import open_clip
    import torch
    from safetensors.torch import save

    from tests.conftest import TINY_CLIP_CONFIGS

    for name in OPENAI_REPOS:
        monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, name, TINY_CLIP_CONFIGS[name])
    files = {}
    for name in OPENAI_REPOS:
        torch.manual_seed(7)
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=True)
        files[name] = save({k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()})
    yield files


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer(LoopbackServer):
    """A LoopbackServer with hub-shaped paths and headers (see the module docstring)."""

    def __init__(self, commit: str = COMMIT) -> None:
        super().__init__()
        self.commit = commit
        self.not_found_headers = {"X-Error-Code": "EntryNotFound"}  # how the hub says "no such file"

    @staticmethod
    def path(repo_id: str, filename: str, revision: str = "main") -> str:
        return f"{repo_id}/resolve/{revision}/{filename}"

    def add_file(self, repo_id: str, filename: str, data: bytes, *, lfs: bool | None = None, **fault: Any) -> str:
        """Serve ``data`` as ``filename`` of ``repo_id`` (LFS: ETag = sha256; by default for files over 10 kB
        or weights) under ``main`` and the commit; ``fault`` applies to the ``main`` path. Returns its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        lfs = lfs if lfs is not None else (len(data) > 10_000 or filename.endswith((".safetensors", ".bin")))
        etag = digest if lfs else git_blob_sha1(data)
        headers = {"X-Repo-Commit": self.commit, "ETag": f'"{etag}"'}
        if lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        for revision in ("main", self.commit):
            self.add(self.path(repo_id, filename, revision), data, headers=headers)
        if fault:
            self.fault(self.path(repo_id, filename), **fault)
        return digest

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            self.add_file(repo_id, name, data)

    def requests_for(self, repo_id: str, filename: str) -> int:
        """Requests seen for a file, under ``main`` and the commit."""
        return sum(self.stats(self.path(repo_id, filename, r)).requests for r in ("main", self.commit))


def use_hub(monkeypatch: Any, hub: HubServer | None, home: Path) -> Path:
    """Point huggingface_hub (this process and subprocesses) at ``hub`` with ``home`` as HF_HOME; ``hub=None``:
    offline. Returns the hub cache folder."""
    from huggingface_hub import constants

    cache = Path(home) / "hub"
    endpoint = hub.base_url if hub is not None else "http://127.0.0.1:9"  # never used offline
    env = {"HF_HOME": str(home), "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": endpoint,
           "HF_HUB_OFFLINE": "0" if hub is not None else "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", hub is None)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 5)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
    return cache
