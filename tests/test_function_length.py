"""Functions stay short enough to read in one screen: at most 60 lines from ``def`` to the last line (decorators
not counted) in the four packages. For a function decorated with a ``.command`` registration (a typer command),
whose signature is a list of option declarations, the count starts at the first statement of its body.

``KNOWN_LONG`` lists the functions still over the limit with their length today: the list may only shrink (a
listed function that grows, or a new long one, fails; one that is split must be removed from the list)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vlpet", "features", "pipelines", "flows")
LIMIT = 60
KNOWN_LONG: dict[str, int] = {}


def function_lengths(source: str) -> dict[str, int]:
    """``{qualified name: lines}`` of every function and method in ``source``."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                is_command = any(".command" in ast.unparse(d) for d in child.decorator_list)
                first = child.body[0].lineno if is_command else child.lineno
                out[prefix + child.name] = child.end_lineno - first + 1
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(ast.parse(source), "")
    return out


def test_the_measure_counts_lines_as_a_reader_would():
    source = (
        "@decorator\n"
        "def f(a,\n"
        "      b):\n"
        "    x = 1\n"
        "\n"
        "    return x\n"
        "class C:\n"
        "    def m(self):\n"
        "        pass\n"
        "@app.command()\n"
        "def cmd(\n"
        "    opt: int = 1,\n"
        "):\n"
        "    '''Doc.'''\n"
        "    run()\n"
    )
    assert function_lengths(source) == {"f": 5, "C.m": 2, "cmd": 2}


def test_no_function_is_longer_than_one_screen():
    too_long, lengths = [], {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, n in function_lengths(path.read_text()).items():
                lengths[f"{rel}::{name}"] = n
                if n > LIMIT and KNOWN_LONG.get(f"{rel}::{name}", 0) < n:
                    too_long.append(f"{rel}::{name}: {n} lines")
    assert not too_long, f"functions over {LIMIT} lines (split them into named steps):\n" + "\n".join(too_long)
    stale = [k for k, n in KNOWN_LONG.items() if lengths.get(k, 0) <= LIMIT]
    assert not stale, f"split or removed, take them off KNOWN_LONG: {stale}"
