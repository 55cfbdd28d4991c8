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
import threading
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
