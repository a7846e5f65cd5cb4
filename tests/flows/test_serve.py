"""The served deployments against a real local Prefect server (slow; runs in CI):
``prefect server start`` → ``vlpet serve`` → ``prefect deployment run extract-features/default ... --watch``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM by PID, then SIGKILL after ``timeout`` (only the processes this test started)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _wait(what: str, ok, timeout: float, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        for p, log in zip(procs, logs):
            if p.poll() is not None:
                raise AssertionError(f"{what}: process {p.args} exited {p.returncode}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{what}: not ready after {timeout} s\n" + "\n".join(log.read_text()[-3000:] for log in logs))


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


@pytest.mark.slow
def test_served_extract_features_deployment_runs_to_completion(tmp_path, tiny_clip_pythonpath):
    media = tmp_path / "media"
    media.mkdir()
    for k in range(3):
        rng = np.random.default_rng(k)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(media / f"img{k}.jpg")
    store = tmp_path / "store"
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90", HF_HUB_OFFLINE="1")
    # PYTHONPATH: the flow run's CLIP model is the tiny config (conftest)
    client_env = {**env, "PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                  "PYTHONPATH": tiny_clip_pythonpath}
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        with open(server_log, "w") as out:
            procs.append(subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                 "--analytics-off", "--no-ui"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        _wait("server /api/health", lambda: (r := _get(f"{api}/health")) is not None and r.status_code == 200,
              120, procs, [server_log])
        t_server = time.monotonic() - t0
        with open(serve_log, "w") as out:
            procs.append(subprocess.Popen([str(BIN / "vlpet"), "serve"], stdout=out, stderr=subprocess.STDOUT,
                                          env=client_env, cwd=tmp_path))
        _wait("deployment extract-features/default",
              lambda: (r := _get(f"{api}/deployments/name/extract-features/default")) is not None
              and r.status_code == 200, 120, procs, [server_log, serve_log])
        t_serve = time.monotonic() - t0
        run = subprocess.run(
            [str(BIN / "prefect"), "deployment", "run", "extract-features/default", "-p", f"media={media}",
             "-p", f"store={store}", "-p", "weights=random", "--watch", "--watch-timeout", "300"],
            env=client_env, cwd=tmp_path, capture_output=True, text=True, timeout=360)
        t_run = time.monotonic() - t0
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:] + serve_log.read_text()[-4000:]
        runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()
        mine = [r for r in runs if r["name"] and r.get("deployment_id")]
        assert mine and all(r["state_type"] == "COMPLETED" for r in mine), runs
        from features.store import FeatureStore

        reader = FeatureStore.open_reader(store)
        assert sorted(reader.media_ids) == ["img0", "img1", "img2"]
        assert reader.get("img0").shape == (49, 2048)  # clip-rn101-grid, the default extractor
        assert (tmp_path / ".vlpet" / "lineage.jsonl").is_file()  # data root = the store's parent
        print(f"\ntimings: server healthy {t_server:.1f} s, deployments served {t_serve:.1f} s, "
              f"run watched to completion {t_run:.1f} s (from start)")
    finally:
        for p in reversed(procs):
            _stop(p)
