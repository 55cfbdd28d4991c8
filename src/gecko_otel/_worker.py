"""The one background-worker class: every thread gecko-otel runs is a `Worker`.

The watchdog, the store writer, the alert dispatcher's supervisor and each
handler's lane run their loop on a `Worker`: a daemon thread started lazily,
woken by `Worker.wake` or every ``interval`` seconds, stopped with a bounded
`Worker.stop`, and reset in a forked child (only the forking thread survives
``fork()``: the child starts with fresh locks and events and no thread, and
the next `Worker.ensure_running` starts one). The thread holds its owner
weakly, so an owner nobody references is collected and its thread ends; it
runs with OpenTelemetry instrumentation suppressed, so our own I/O (database
writes, webhook calls) is never traced; and an error in a step is reported
by the internal-error guard and the loop goes on.

The OpenTelemetry SDK's shared ``BatchProcessor`` is the model.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from gecko_otel._guard import at_fork_in_child, guarded

#: A step that returns this is called again at once (it has more to do).
AGAIN: Final = True
#: A step that returns this ends the thread.
STOP: Final = False

# Bumped in every forked child: a worker compares it with the value it saw
# when it started its thread, which is much cheaper per call than is_alive().
_forks = 0


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """OpenTelemetry instrumentation suppressed on this thread for the block: our own
    I/O (migrations, restores, writes, HTTP) never becomes spans in the user's backend."""
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        detach(token)


def _count_fork() -> None:
    global _forks  # noqa: PLW0603 - a process-wide fork generation
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


class Worker:
    """A daemon thread that calls ``owner.<step>(timed_out)`` in a loop.

    Each pass calls the step, then sleeps until `wake` is called or
    ``interval`` seconds pass (``timed_out`` tells the next call which). A
    step returns `AGAIN` to be called again at once, `STOP` to end the
    thread, or None to sleep.

    Args:
        owner: The object whose method is called; held weakly.
        step: The name of that method.
        name: The thread's name.
        interval: Seconds between calls when nothing wakes the thread (None:
            only when woken).

    Threading: every method is safe from any thread and returns at once,
    except `stop`, which waits for the thread at most its ``timeout``.
    """

    def __init__(
        self, owner: object, step: str, *, name: str, interval: float | None = None
    ) -> None:
        self._ref = weakref.ref(owner)
        self._step = step
        self.name = name
        self.interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_in = -1  # the fork generation the thread was started in
        #: Bumped by `restart`: a thread of an older generation ends after its step.
        self.generation = 0
        at_fork_in_child(self, "_after_fork")

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called."""
        return self._stopping.is_set()

    def ensure_running(self) -> None:
        """Start the thread unless it runs (first use, after ``fork()``, after it ended)."""
        if self._started_in == _forks or self._stopping.is_set():
            return
        with self._lock:
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._start()
            self._started_in = _forks

    def restart(self) -> None:
        """Leave the current thread to finish its step and end; a fresh one carries on."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._start()
            self._started_in = _forks

    def abandon(self) -> None:
        """Leave the current thread to finish its step and end, and start none now
        (`restart` later, or `ensure_running` after it ended, carries on)."""
        with self._lock:
            self.generation += 1
            self._started_in = -1  # ensure_running checks the thread again

    def wake(self) -> None:
        """Run the next step now rather than after ``interval``."""
        self._wake.set()

    def sleep(self, seconds: float) -> bool:
        """For a step: wait ``seconds`` unless the worker is stopped; True if it was."""
        return self._stopping.wait(seconds)

    def stop(self, timeout: float) -> bool:
        """Stop the loop and wait for the thread at most ``timeout`` seconds; True if it ended."""
        self._stopping.set()
        self._wake.set()
        with self._lock:  # a thread is started under it: never join one not yet started
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def _start(self) -> None:
        self.generation += 1
        thread = threading.Thread(
            target=self._loop, args=(self.generation,), name=self.name, daemon=True
        )
        self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter exit, Python 3.12+: no new thread; work here
            self._thread = None
            with untraced():
                while self._call(True) is AGAIN:
                    pass

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        stopped = self._stopping.is_set()
        self._stopping = threading.Event()
        if stopped:
            self._stopping.set()
        self._thread = None
        self._started_in = -1

    def _loop(self, generation: int) -> None:
        timed_out = False
        with untraced():
            while generation == self.generation:
                self._wake.clear()  # before the step: a wake() during it is not lost
                result = self._call(timed_out)
                if result is STOP or self._stopping.is_set():
                    return
                if result is AGAIN:
                    timed_out = False
                    continue
                timed_out = not self._wake.wait(self.interval)

    def _call(self, timed_out: bool) -> bool | None:
        owner: Any = self._ref()
        if owner is None:
            return STOP  # the owner was collected
        step: Callable[[bool], bool | None] = getattr(owner, self._step)
        result: bool | None = None
        with guarded(f"{self.name} worker"):
            result = step(timed_out)
        return result
