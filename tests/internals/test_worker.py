"""The one background-worker class: start, wake, interval, stop, restart, fork, weak owner."""

from __future__ import annotations

import gc
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value

from gecko_otel._worker import AGAIN, STOP, Worker
from support.forks import wait_child

_names = itertools.count()


def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class Owner:
    """Counts the steps its worker runs and what each saw."""

    def __init__(self, interval: float | None = None, result: bool | None = None) -> None:
        self.name = f"test-worker-{next(_names)}"  # a failed test's thread never misleads another
        self.calls: list[bool] = []
        self.threads: set[str] = set()
        self.suppressed: list[object] = []
        self.result = result
        self.worker = Worker(self, "step", name=self.name, interval=interval)

    def step(self, timed_out: bool) -> bool | None:
        self.calls.append(timed_out)
        self.threads.add(threading.current_thread().name)
        self.suppressed.append(get_value(_SUPPRESS_INSTRUMENTATION_KEY))
        return self.result


def test_starts_lazily_runs_a_step_and_sleeps_until_woken() -> None:
    owner = Owner()
    assert owner.calls == []  # nothing runs before ensure_running()
    owner.worker.ensure_running()
    eventually(lambda: len(owner.calls) == 1)
    time.sleep(0.05)
    assert owner.calls == [False]  # no interval: asleep until woken
    owner.worker.wake()
    eventually(lambda: len(owner.calls) == 2)
    assert owner.threads == {owner.name}
    assert owner.suppressed == [True, True]  # our own I/O is never traced
    assert owner.worker.stop(2.0)


def test_interval_passes_timed_out_true() -> None:
    owner = Owner(interval=0.01)
    owner.worker.ensure_running()
    eventually(lambda: owner.calls.count(True) >= 3)
    assert owner.calls[0] is False
    assert owner.worker.stop(2.0)


def test_again_runs_the_next_step_at_once_and_stop_ends_the_thread() -> None:
    owner = Owner(result=AGAIN)
    owner.worker.ensure_running()
    eventually(lambda: len(owner.calls) >= 50)  # never waits between steps
    owner.result = STOP
    eventually(lambda: not _thread_named(owner.name))
    ended = len(owner.calls)
    time.sleep(0.02)
    assert len(owner.calls) == ended


def test_stop_is_bounded_while_a_step_hangs() -> None:
    release = threading.Event()

    class Hanging:
        def __init__(self) -> None:
            self.worker = Worker(self, "step", name="test-hanging")

        def step(self, timed_out: bool) -> None:
            inside.set()
            release.wait(5)

    inside = threading.Event()
    owner = Hanging()
    owner.worker.ensure_running()
    assert inside.wait(5)
    started = time.monotonic()
    assert owner.worker.stop(0.1) is False  # the thread is still in its step
    assert time.monotonic() - started < 1.0
    release.set()
    eventually(lambda: not _thread_named("test-hanging"))
    assert owner.worker.stopping


def test_restart_leaves_the_old_thread_to_finish_and_carries_on() -> None:
    release = threading.Event()

    class Stuck:
        def __init__(self) -> None:
            self.worker = Worker(self, "step", name="test-stuck")
            self.generations: list[int] = []

        def step(self, timed_out: bool) -> None:
            self.generations.append(self.worker.generation)
            if len(self.generations) == 1:
                release.wait(5)  # the first call hangs

    owner = Stuck()
    owner.worker.ensure_running()
    eventually(lambda: owner.generations == [1])
    owner.worker.restart()  # a fresh thread while the first one hangs
    eventually(lambda: owner.generations[-1] == 2)
    release.set()
    time.sleep(0.05)
    assert owner.generations.count(1) == 1  # the old thread ended after its step
    assert owner.worker.stop(2.0)


def test_an_error_in_a_step_is_reported_and_the_loop_goes_on(
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    class Failing:
        def __init__(self) -> None:
            self.worker = Worker(self, "step", name="test-failing", interval=0.01)
            self.calls = 0

        def step(self, timed_out: bool) -> None:
            self.calls += 1
            raise RuntimeError("boom")

    owner = Failing()
    owner.worker.ensure_running()
    eventually(lambda: owner.calls >= 3)
    assert owner.worker.stop(2.0)
    assert {where for where, _ in internal_errors} == {"test-failing worker"}


def test_an_owner_nobody_holds_is_collected_and_its_thread_ends() -> None:
    owner = Owner(interval=0.01)
    owner.worker.ensure_running()
    calls, name = owner.calls, owner.name
    eventually(lambda: calls)
    del owner
    gc.collect()
    eventually(lambda: not _thread_named(name))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_its_own_thread() -> None:
    owner = Owner()
    owner.worker.ensure_running()
    eventually(lambda: owner.calls)
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is gone; ensure_running starts one
        code = 1
        try:
            before = len(owner.calls)
            owner.worker.ensure_running()
            deadline = time.monotonic() + 5
            while len(owner.calls) == before and time.monotonic() < deadline:
                time.sleep(0.005)
            code = 0 if len(owner.calls) > before else 2
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    assert owner.worker.stop(2.0)


def _thread_named(name: str) -> bool:
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


def test_stop_while_another_thread_is_starting_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stop() from one thread while another is inside ensure_running(): stop waits for
    the start instead of joining a thread not yet started (a RuntimeError that broke
    shutdown on Python 3.10)."""
    owner = Owner()
    starting, go = threading.Event(), threading.Event()
    real_start = threading.Thread.start

    def slow_start(thread: threading.Thread) -> None:
        if thread.name == owner.name:
            starting.set()
            go.wait(5)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    starter = threading.Thread(target=owner.worker.ensure_running)
    starter.start()
    assert starting.wait(5)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(owner.worker.stop(2.0)))
    stopper.start()
    time.sleep(0.05)  # the stopper is waiting for the start
    go.set()
    starter.join(5)
    stopper.join(5)
    assert stopped == [True]
