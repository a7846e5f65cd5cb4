"""The ``vlpet`` command line answers help and usage errors without importing the heavy libraries.

Timing belongs in ``bench/cli_startup.py``; what a test can check for sure is the cause of a slow start:
which modules a fresh process has loaded after importing the CLI, after ``--help`` on the app and on every
(sub-)command, and after a usage error. Each check runs in a new interpreter, since this test process may
already hold torch from other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "open_clip", "prefect", "prefect_dask", "dask", "distributed", "pyarrow",
         "zarr", "numpy", "PIL", "av", "decord", "datasets", "h5py", "matplotlib")

PROBE = r"""
import json, sys
from flows.cli import app
from typer.main import get_command

HEAVY = {heavy!r}
report = {{"after_import": sorted(m for m in HEAVY if m in sys.modules)}}

def paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {{}}).items()):
        yield from paths(sub, (*prefix, name))

def run(args):
    try:
        app(args=list(args), prog_name="vlpet")
    except SystemExit as e:
        return e.code
    return 0

report["commands"] = [list(p) for p in paths(get_command(app))]
report["help_codes"] = {{" ".join(p) or "(app)": run([*p, "--help"]) for p in report["commands"]}}
report["usage_error_code"] = run(["train", "--device", "cpu"])  # --data/--out missing
report["after_all"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library(probe):
    assert probe["after_import"] == []


def test_help_everywhere_and_a_usage_error_load_no_heavy_library(probe):
    # the probe really walked the command tree: the app, its commands and the store sub-app's commands
    assert {"train", "extract", "demo", "params"} <= {p[0] for p in probe["commands"] if p}
    assert ["store", "verify"] in probe["commands"]
    assert set(probe["help_codes"].values()) == {0}
    assert probe["usage_error_code"] == 2
    assert probe["after_all"] == []


def test_library_names_still_resolve_lazily():
    """``vlpet``'s public names load their module on first use and are the real objects."""
    code = ("import sys, vlpet; assert 'torch' not in sys.modules; "
            "from vlpet import build_model, method_config; import vlpet.build as b; "
            "assert build_model is b.build_model and 'torch' in sys.modules; "
            "assert set(vlpet.__all__) <= set(dir(vlpet)); "
            "assert all(getattr(vlpet, n) is not None for n in vlpet.__all__); "
            "import pytest; pytest.raises(AttributeError, getattr, vlpet, 'no_such_name')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
