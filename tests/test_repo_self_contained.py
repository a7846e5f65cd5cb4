"""The repository stands on its own: no tracked file points outside it, and what it cites exists.

A fresh clone in an empty folder has no sibling folders and none of the documents the project was first
specified from, so a reference to ``../something`` or to those documents is a dead end for the next
maintainer (and a test reading such a path silently skips). The design documents live in ``docs/``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()  # spells the patterns it looks for: not scanned

# What a tracked file may not contain, with the reason shown on failure.
FORBIDDEN = {
    r"\.\./": "a path into the parent folder (outside the repository)",
    r"shared/(docs|fixtures)": "a folder outside the repository",
    r"\b(DATA_SPEC|VLPET_SPEC)\b|\b(ARCHITECTURE|STACK|ANCHORS)\.md\b": "a document that is not in the "
    "repository (cite docs/architecture.md, data.md, method.md or operations.md)",
    r"/work/": "a path on one development machine",
}

# Exact text in which a forbidden pattern is legitimate, per file. Keep it small; each entry says why.
ALLOWED: dict[str, tuple[str, ...]] = {
    # archive-safety tests: members that try to escape the unpack folder are the test input
    "tests/pipelines/test_archive.py": ("images/../../evil.txt", "../evil.txt", "../.."),
    # the media index must refuse a relative path that climbs out of the media root: test input
    "tests/pipelines/test_tables_errors.py": ("../outside.jpg",),
    # upstream NLVR2 annotations, kept byte-for-byte: a crawled image URL has "?img=../images/" in its query
    "tests/fixtures/real/nlvr2_dev.json": ("?img=../images/",),
}


def tracked_files() -> list[str]:
    """``git ls-files`` (what a clone holds); outside a git checkout, every file but build/cache folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "data", "runs", "demo-output"}
        files = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return sorted(f for f in files if (ROOT / f).is_file())  # a deleted but not yet committed file is gone


def text_of(rel: str) -> str | None:
    data = (ROOT / rel).read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary (images, checkpoints): no paths to read
    return data.decode("utf-8", errors="replace")


MD_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
# ``Path(__file__).parents[k]`` or ``.parent`` chains: climbing above the repository root without a ``../``
FILE_PARENTS = re.compile(r"__file__\)?(?:\.resolve\(\))?((?:\.parent\b)+|\.parents\[(\d+)\])((?:\.parent\b)*)")


def _inside(rel: str, target: str) -> bool:
    return (ROOT / rel).parent.joinpath(target).resolve().is_relative_to(ROOT)


def outside_references(rel: str, text: str) -> list[str]:
    found = []
    depth = rel.count("/")  # parents[depth] of a file is the repository root
    for n, line in enumerate(text.splitlines(), 1):
        for allowed in sorted(ALLOWED.get(rel, ()), key=len, reverse=True):
            line = line.replace(allowed, "")
        if rel.endswith(".md"):  # a Markdown link may climb folders as long as it lands inside the repository
            line = MD_LINK.sub(lambda m: "" if _inside(rel, m.group(1)) else m.group(0), line)
        for pattern, why in FORBIDDEN.items():
            for m in re.finditer(pattern, line):
                found.append(f"{rel}:{n}: {m.group(0)!r}: {why}")
        for m in FILE_PARENTS.finditer(line):
            up = (int(m.group(2)) + 1 if m.group(2) else m.group(1).count(".parent")) + m.group(3).count(".parent")
            if up > depth + 1:  # one step to the file's folder, then depth steps to the root
                found.append(f"{rel}:{n}: {m.group(0)!r}: climbs above the repository root")
    return found


@pytest.fixture(scope="module")
def files() -> list[str]:
    return tracked_files()


def test_no_tracked_file_refers_outside_the_repository(files):
    assert "README.md" in files and "docs/README.md" in files  # the listing really is the repository
    problems = [p for rel in files if rel != THIS and (text := text_of(rel)) is not None
                for p in outside_references(rel, text)]
    assert not problems, "references outside the repository:\n" + "\n".join(problems)


def test_every_allowance_is_still_needed(files):
    """An allow-list entry whose text has gone from its file is stale: remove it."""
    for rel, texts in ALLOWED.items():
        assert rel in files, f"{rel} is allowed but not tracked"
        content = text_of(rel) or ""
        for allowed in texts:
            assert allowed in content, f"{rel}: allowed text {allowed!r} no longer occurs"


def test_the_check_catches_each_kind_of_reference():
    """The scanner itself: each forbidden kind is found, and an allowance hides only its own text."""
    dots = "." * 2
    # assembled from pieces, so that a textual scan of the repository does not flag this file itself
    samples = [f"see {dots}/shared/" + "docs/X.md", "shared/" + "fixtures/real/a.json", "DATA_" + "SPEC §3",
               "STACK" + ".md", "/wo" + "rk/main/x", f"open('{dots}/sibling/file')"]
    for sample in samples:
        assert outside_references("some/file.py", sample), sample
    # climbing out with pathlib instead of "../" (how the real-fixture tests once reached a sibling folder)
    assert outside_references("tests/pipelines/t.py", "Path(__file__).resolve().parents[3] / 'shared'")
    assert outside_references("tests/pipelines/t.py", "Path(__file__).parent.parent.parent.parent / 'x'")
    assert not outside_references("tests/pipelines/t.py", "Path(__file__).resolve().parents[2] / 'docs'")
    assert not outside_references("tests/t.py", "Path(__file__).resolve().parent.parent / 'docs'")
    # a Markdown link may use "../" when it stays inside the repository
    assert not outside_references("docs/README.md", f"[README]({dots}/README.md)")
    assert outside_references("docs/README.md", f"[x]({dots}/{dots}/elsewhere.md)")
    assert not outside_references("docs/architecture.md", "see docs/method.md and vlpet/config.py")
    assert not outside_references("tests/pipelines/test_archive.py", f'"{dots}/evil.txt"')
    assert outside_references("tests/pipelines/test_archive.py", f'"{dots}/other.txt"')


def test_cited_docs_and_relative_links_exist(files):
    """Every ``docs/<name>.md`` named anywhere, and every relative Markdown link, points at a tracked file."""
    tracked = set(files)
    missing = []
    for rel in files:
        if rel == THIS or (text := text_of(rel)) is None:
            continue
        for m in re.finditer(r"(?<![\w/.])docs/[\w.-]+\.md\b", text):
            if m.group(0) not in tracked:
                missing.append(f"{rel}: {m.group(0)}")
        if rel.endswith(".md"):
            for m in MD_LINK.finditer(text):
                target = m.group(1)
                if re.match(r"[a-z]+:", target):
                    continue  # a URL
                resolved = (ROOT / rel).parent.joinpath(target).resolve()
                inside = resolved.is_relative_to(ROOT)
                if not inside or resolved.relative_to(ROOT).as_posix() not in tracked | _dirs(tracked):
                    missing.append(f"{rel}: link ({target})")
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


def _dirs(tracked: set[str]) -> set[str]:
    return {p.as_posix() for f in tracked for p in Path(f).parents if p.as_posix() != "."}
