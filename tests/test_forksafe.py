"""A process that ran a Prefect flow can still fork workers that exit cleanly (flows.forksafe)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, sys
    import flows  # installs the after-fork cleanup
    from prefect import flow

    @flow
    def noop():
        return 1

    noop()

    def child():
        pass

    codes = []
    for _ in range(3):
        p = mp.get_context("fork").Process(target=child)
        p.start()
        p.join()
        codes.append(p.exitcode)
    print("EXITCODES", codes)
""")


@pytest.mark.slow
def test_forked_child_after_a_flow_exits_zero(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert "EXITCODES [0, 0, 0]" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
