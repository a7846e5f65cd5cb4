"""Cold reads without root: drop given files' pages from the page cache (benchmarks import this as a sibling)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def evict(paths: Iterable[Path]) -> None:
    """``posix_fadvise(DONTNEED)`` on each file; pages a process still has mapped stay (unmap first)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty or in-writeback pages are not dropped: write them out first
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
