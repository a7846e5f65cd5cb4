"""The dependency direction of docs/architecture.md and the absence of import cycles, checked on the source text
of every module (every import counts: top level, inside functions and under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vlpet", "features", "pipelines", "flows")
FORBIDDEN = {
    "vlpet": {"pipelines", "features", "flows", "prefect", "prefect_dask", "dask", "distributed"},
    "features": {"pipelines", "flows", "prefect", "prefect_dask"},
    "pipelines": {"flows", "prefect", "prefect_dask"},
}
# The only vlpet modules features may use: the shared helpers, which import nothing of the project (checked
# below), so the feature code never pulls in the model library.
FEATURES_MAY_USE = {"vlpet.atomic", "vlpet.provenance", "vlpet.device", "vlpet.hub"}
# Import cycles known and being removed; each must still exist, so the entry is deleted as soon as the cycle is
# gone. (Empty: the flows restructure removed demo <-> model_flows <-> prefect_flows.)
KNOWN_CYCLES: list[set[str]] = []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _imported_modules(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports: ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``;
    relative imports are resolved."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                target = f"{module}.{alias.name}"
                out.add(target if target in MODULES else module)
    return (out & MODULES.keys()) - {name}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan), i.e. every import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = {name: _imported_modules(name, path) for name, path in MODULES.items()}
    cycles = _cycles(graph)
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not new, f"import cycles among the project's modules: {new}"
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in cycles]
    assert not gone, f"these cycles are gone: delete them from KNOWN_CYCLES: {gone}"


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_features_uses_only_the_shared_helpers_of_vlpet():
    used = {m for name, path in MODULES.items() if name.startswith("features")
            for m in _imported_modules(name, path) if m.split(".")[0] == "vlpet"}
    assert used <= FEATURES_MAY_USE, f"features imports vlpet modules beyond the shared helpers: {used}"
    assert _imported_modules("vlpet", MODULES["vlpet"]) == set(), "vlpet/__init__ must load its API lazily"
    for helper in FEATURES_MAY_USE:
        project = {m.split(".")[0] for m in _imported_modules(helper, MODULES[helper])} - {"vlpet"}
        inner = _imported_modules(helper, MODULES[helper]) - FEATURES_MAY_USE - {"vlpet"}
        assert not project and not inner, f"{helper} must import nothing of the project but the shared helpers"


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


PREFECT_MODULES = {"prefect", "prefect_dask", "flows.prefect_flows", "flows.stage_tasks", "flows.end_to_end",
                   "flows.observe", "flows.dask_shards", "flows.serve"}


def _full_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_stages_and_the_cli_run_without_prefect():
    """The stages, their executor, cache and lineage are plain Python: the CLI, tests and Dask workers run them
    without Prefect; only the Prefect layer (tasks, flows, observe, Dask plumbing, serve) imports it."""
    flows = ROOT / "flows"
    modules = [*sorted((flows / "stages").rglob("*.py")),
               *(flows / f"{m}.py" for m in ("caching", "lineage", "runs", "demo", "stage_cli", "train_cli"))]
    offenders = {}
    for path in modules:
        bad = {m for m in _full_imports(path) if m in PREFECT_MODULES or m.split(".")[0] in PREFECT_MODULES}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"Prefect imported by a Prefect-free module: {offenders}"
