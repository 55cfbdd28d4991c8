"""The watchdog: a daemon thread that evaluates time-based rules on a clock.

A collector that simply stops running produces no run to evaluate, so the
``stale`` rule, repeat notifications and expiring suppressions need a clock.
The watchdog calls its ``tick`` function every ``interval`` seconds; it never
raises (errors are counted) and stops on `Watchdog.stop`. After
``fork()`` it is restarted lazily by `Watchdog.ensure_running`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from gecko_otel._guard import at_fork_in_child, report_internal_error

# Bumped in every forked child: a watchdog compares it with the value it saw
# when it started its thread, which is much cheaper per run than is_alive().
_forks = 0


def _count_fork() -> None:
    global _forks  # noqa: PLW0603 - a process-wide fork generation
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)


class Watchdog:
    """Calls ``tick()`` every ``interval`` seconds on a daemon thread."""

    def __init__(self, tick: Callable[[], None], interval: float) -> None:
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_in = -1  # the fork generation the thread was started in
        self._lock = threading.Lock()
        at_fork_in_child(self, "_reset_lock")

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        """Start the thread if it is not running (first use, or after fork())."""
        if self._started_in == _forks or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="gecko-otel-watchdog", daemon=True
                )
                self._thread.start()
            self._started_in = _forks

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - the watchdog must keep ticking
                report_internal_error("Watchdog.tick", exc)
