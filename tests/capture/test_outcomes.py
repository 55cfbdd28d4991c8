"""How an exception ends a run, whichever of asyncio and concurrent.futures is loaded."""

from __future__ import annotations

import pytest


def test_asyncio_exceptions_still_classify_once_asyncio_is_loaded() -> None:
    import asyncio
    import concurrent.futures

    from gecko_otel._capture.outcomes import classify_exception

    assert classify_exception(asyncio.CancelledError()).value == "cancelled"
    assert classify_exception(asyncio.TimeoutError()).value == "timeout"
    assert classify_exception(concurrent.futures.TimeoutError()).value == "timeout"
    assert classify_exception(KeyboardInterrupt()).value == "cancelled"
    assert classify_exception(ValueError()).value == "failure"


def test_a_half_imported_asyncio_does_not_break_classification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another thread importing asyncio leaves it in sys.modules before its names exist.
    import sys
    import types

    from gecko_otel._capture.outcomes import classify_exception

    monkeypatch.setitem(sys.modules, "asyncio", types.ModuleType("asyncio"))
    monkeypatch.setitem(sys.modules, "concurrent.futures", types.ModuleType("concurrent.futures"))
    assert classify_exception(ValueError()).value == "failure"
    assert classify_exception(TimeoutError()).value == "timeout"
