"""The one guard for gecko-otel's own failures.

The plugin must never raise into, block or slow a collector, so every hook
runs its work under `guarded` (a ``with`` block or a decorator): an
error is logged with its traceback and counted (``Monitor.export()`` and
``system_health().dropped`` show it), never raised. In *strict* mode, which
our own test suite turns on and users can turn on in theirs
(`gecko_otel.testing.strict_internal_errors`), the guard re-raises
after reporting, so swallowing never hides a bug from a test.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

logger = logging.getLogger("gecko_otel")

_lock = threading.Lock()
_count = 0
_listeners: list[Callable[[str, BaseException], None]] = []
_strict = False

P = ParamSpec("P")
R = TypeVar("R")


def set_strict(strict: bool) -> bool:
    """Make `guarded` re-raise after reporting (for test suites); returns the old mode."""
    global _strict
    previous, _strict = _strict, strict
    return previous


def is_strict() -> bool:
    """Whether `guarded` re-raises."""
    return _strict


class guarded:
    """Report an internal error raised in a block or a function instead of raising it.

    ``with guarded("Monitor.force_flush"): ...`` or ``@guarded("hook")``.
    ``Exception`` subclasses are reported (logged and counted) and swallowed;
    ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``) passes through.
    In strict mode the error is reported and then re-raised.

    Threading: safe from any thread; holds no state between uses.
    """

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        report_internal_error(self._where, exc)
        return not _strict

    def __call__(self, function: Callable[P, R | None]) -> Callable[P, R | None]:
        where = self._where

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
            with guarded(where):
                return function(*args, **kwargs)
            return None

        return wrapper


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
    """Undo `add_internal_error_listener`; unknown listeners are ignored."""
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
            with guarded(f"{type(target).__name__}.{method} after fork"):
                getattr(target, method)()

    os.register_at_fork(after_in_child=reset)


def finish_within(call: Callable[[], object], timeout: float) -> bool:
    """Run ``call`` on a daemon thread and wait at most ``timeout`` seconds for it.

    For shutting down what may hang (an exporter stuck on an unreachable
    endpoint): True if it finished in time, False if it was left running.
    Its errors are reported as internal errors. Where no thread can be
    started (interpreter exit on Python 3.12+), it runs on this thread.
    """
    done = threading.Event()

    def run() -> None:
        with guarded(f"{getattr(call, '__qualname__', 'call')} at shutdown"):
            call()
        done.set()

    thread = threading.Thread(target=run, name="gecko-otel-shutdown", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # at interpreter exit, Python 3.12+ starts no thread: run it here
        run()
    return done.wait(max(0.0, timeout))
