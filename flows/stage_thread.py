"""Run a stage's body in a thread of its own that ends with it.

Why: torch's OpenMP runtime (libgomp) keeps a team of worker threads for every host thread that has run a
parallel region, for as long as that host thread lives. Once a process holds more of them than it has CPUs,
libgomp stops spinning and wakes its workers through the kernel for every parallel region, which is slow for
the many small operations of the tiny models. Prefect keeps its task threads alive for the whole flow. So,
after the first stage that used torch on one of them, every later torch stage in the flow ran on such a
throttled runtime. Measured on the 2-core box: denoising pre-training took 10.1-10.8 s with another live thread
that had used torch, against 4.4-5.6 s when that thread had ended (bench/RESULTS.md, session 17). A thread per
stage gives its team back when the stage ends.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_in_fresh_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()`` in a new thread that carries this thread's context (the Prefect run context, so the run's
    logger works there); returns its result or re-raises its exception here.

    The thread is not a daemon: if the caller is interrupted while waiting, the stage still finishes its
    writes rather than being cut off at interpreter exit."""
    ctx = contextvars.copy_context()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = ctx.run(fn)
        except BaseException as e:  # re-raised in the caller's thread below
            outcome["error"] = e

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
