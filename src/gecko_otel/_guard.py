"""Accounting for gecko-otel's own failures.

The plugin must never raise into, block or slow a collector, so every hook
catches its own errors and reports them here: a log line with the traceback
and a counter that ``Monitor.export()`` shows. Our own test suite installs a
listener that turns any reported error into a test failure (see
``tests/conftest.py``), so swallowing never hides a bug from us.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable

logger = logging.getLogger("gecko_otel")

_lock = threading.Lock()
_count = 0
_listeners: list[Callable[[str, BaseException], None]] = []


def report_internal_error(where: str, exc: BaseException) -> None:
    """Log and count an error raised inside gecko-otel itself.

    Threading: safe from any thread. Never raises.
    """
    global _count  # noqa: PLW0603 - one process-wide counter, reset by tests
    with _lock:
        _count += 1
        listeners = tuple(_listeners)
    # Neither a broken logging setup nor a raising listener may break the
    # reporter: the count above already shows the error.
    with contextlib.suppress(Exception):
        logger.error("gecko-otel internal error in %s", where, exc_info=exc)
    for listener in listeners:
        with contextlib.suppress(Exception):
            listener(where, exc)


def internal_error_count() -> int:
    """How many internal errors this process has reported."""
    return _count


def add_internal_error_listener(listener: Callable[[str, BaseException], None]) -> None:
    """Call ``listener(where, exc)`` for every internal error (used by test suites)."""
    with _lock:
        _listeners.append(listener)


def remove_internal_error_listener(listener: Callable[[str, BaseException], None]) -> None:
    """Undo :func:`add_internal_error_listener`; unknown listeners are ignored."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def at_fork_in_child(obj: object, method: str) -> None:
    """Call ``obj.<method>()`` in the child after ``fork()``, while ``obj`` lives.

    Only the forking thread survives a fork: locks other threads held stay
    held forever and their threads are gone, so components that own locks or
    threads reset them here. Holds ``obj`` weakly; never raises.
    """
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(obj)

    def reset() -> None:
        target = ref()
        if target is not None:
            try:
                getattr(target, method)()
            except Exception as exc:  # noqa: BLE001 - a reset must not break the child
                report_internal_error(f"{type(target).__name__}.{method} after fork", exc)

    os.register_at_fork(after_in_child=reset)
