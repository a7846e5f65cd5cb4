"""Make ``fork`` safe after Prefect has run in a process (DataLoader workers, extraction workers).

Prefect's background services (events, logs) register ``threading._register_atexit`` hooks that assume
their worker thread exists. A forked child has no such thread, so at its exit the hook fails
(``AssertionError`` in ``QueueService._drain``) and the child exits with code 1 although its work
succeeded; torch's DataLoader then reports "worker exited unexpectedly". Reproduced with Prefect 3.8.8:
run any flow, fork a ``multiprocessing`` child that returns normally, exit code 1. The fix: drop those
hooks in the child right after the fork (they belong to the parent's threads).
"""

from __future__ import annotations

import os
import threading

_installed = False


def _is_prefect_hook(hook: object) -> bool:
    func = getattr(hook, "func", hook)  # threading wraps each hook in functools.partial
    owner = getattr(func, "__self__", None)
    return owner is not None and type(owner).__module__.startswith("prefect.")


def _drop_prefect_exit_hooks() -> None:
    hooks = getattr(threading, "_threading_atexits", None)
    if hooks:
        hooks[:] = [h for h in hooks if not _is_prefect_hook(h)]


def install() -> None:
    """Register the after-fork cleanup once per process."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_drop_prefect_exit_hooks)
        _installed = True
