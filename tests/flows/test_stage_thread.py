"""Stage bodies run in a thread of their own (``flows.stage_thread``): result, errors and context carried over,
and the OpenMP workers torch started for that thread are gone when the stage ends."""

from __future__ import annotations

import contextvars
import os
import threading
import time

import pytest

from flows.stage_thread import run_in_fresh_thread

WHO = contextvars.ContextVar("who", default="nobody")


def test_the_body_runs_in_a_new_thread_with_this_context_and_its_result_comes_back():
    WHO.set("the flow's task")
    seen: dict[str, object] = {}

    def body() -> int:
        seen["thread"], seen["who"] = threading.current_thread(), WHO.get()
        return 42

    assert run_in_fresh_thread(body, "vlpet-test") == 42
    assert seen["who"] == "the flow's task"
    assert seen["thread"] is not threading.current_thread() and not seen["thread"].is_alive()


def test_an_error_in_the_body_is_raised_in_the_caller():
    def body() -> None:
        raise ValueError("bad input in stage")

    with pytest.raises(ValueError, match="bad input in stage"):
        run_in_fresh_thread(body, "vlpet-test")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_torch_openmp_workers_started_by_a_stage_end_with_it():
    torch = pytest.importorskip("torch")
    if torch.get_num_threads() < 2:
        pytest.skip("one torch thread: no OpenMP team to leave behind")
    before = _threads()

    def body() -> None:
        a = torch.ones(512, 512)
        for _ in range(3):
            a = (a @ a).clamp_(max=1.0)  # parallel regions: this thread gets an OpenMP team

    run_in_fresh_thread(body, "vlpet-test")
    deadline = time.monotonic() + 5
    while _threads() > before and time.monotonic() < deadline:  # the team's threads exit asynchronously
        time.sleep(0.05)
    assert _threads() <= before
