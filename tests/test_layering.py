"""The dependency direction of docs/architecture.md, checked on the source text of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "vlpet": {"pipelines", "features", "flows", "prefect", "prefect_dask", "dask", "distributed"},
    "features": {"pipelines", "flows", "prefect", "prefect_dask"},
    "pipelines": {"flows", "prefect", "prefect_dask"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_point_down(package):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imports(path) & FORBIDDEN[package]
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"imports against docs/architecture.md's dependency direction: {offenders}"


def test_vlpet_pipelines_usage_is_public_api_only():
    """pipelines may use vlpet's public API only (no private modules)."""
    for path in sorted((ROOT / "pipelines").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vlpet"):
                assert not any(part.startswith("_") for part in node.module.split(".")), (path, node.module)
