"""Shared fixtures. Every test fails if gecko-otel reported an internal error."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gecko_otel import _internal, _state
from gecko_otel.testing import CapturedRuns, capture_runs

pytest_plugins = ["pytester"]

REQUIRE_INTEGRATION = os.environ.get("GECKO_OTEL_REQUIRE_INTEGRATION") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip a test whose external peer is missing, or fail when CI requires it."""
    if REQUIRE_INTEGRATION:
        pytest.fail(f"GECKO_OTEL_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)


class InternalErrors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []
        self.expected = False

    def __call__(self, where: str, exc: BaseException) -> None:
        self.seen.append((where, exc))


@pytest.fixture(autouse=True)
def _fail_on_internal_errors() -> Iterator[InternalErrors]:
    """Our hooks swallow their own errors in production; here each one fails the test."""
    errors = InternalErrors()
    _internal.add_internal_error_listener(errors)
    try:
        yield errors
    finally:
        _internal.remove_internal_error_listener(errors)
    if errors.seen and not errors.expected:
        where, exc = errors.seen[0]
        pytest.fail(f"gecko-otel internal error in {where}: {exc!r}", pytrace=False)


@pytest.fixture
def internal_errors(_fail_on_internal_errors: InternalErrors) -> list[tuple[str, BaseException]]:
    """For tests that provoke internal errors on purpose: the errors, not a failure."""
    _fail_on_internal_errors.expected = True
    return _fail_on_internal_errors.seen


@pytest.fixture(autouse=True)
def _no_global_monitor_leaks() -> Iterator[None]:
    before = _state.monitor()
    declared = dict(_state._declared)  # expectations declared by decorators in a test
    yield
    _state._declared.clear()
    _state._declared.update(declared)
    leaked = _state.monitor()
    _state.install(before)
    assert leaked is before, "a test left a global Monitor installed"


@pytest.fixture
def captured() -> Iterator[CapturedRuns]:
    with capture_runs() as runs:
        yield runs
