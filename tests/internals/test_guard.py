"""The one guard for internal errors: swallowed and counted in production, raised in strict mode."""

from __future__ import annotations

import logging

import pytest

from gecko_otel import internal_error_count
from gecko_otel._guard import guarded, is_strict
from gecko_otel.testing import strict_internal_errors


def test_the_projects_own_tests_run_strict() -> None:
    assert is_strict()


def test_a_guarded_block_swallows_logs_and_counts(
    internal_errors: list[tuple[str, BaseException]], caplog: pytest.LogCaptureFixture
) -> None:
    before = internal_error_count()
    ran_after = False
    with guarded("the block"):
        raise ValueError("bug")
    ran_after = True
    assert ran_after
    assert internal_error_count() == before + 1
    [(where, exc)] = internal_errors
    assert where == "the block"
    assert isinstance(exc, ValueError)
    assert any(r.levelno == logging.ERROR and "the block" in r.getMessage() for r in caplog.records)


def test_a_guarded_function_returns_none_on_error(
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    @guarded("hook")
    def hook(x: int) -> int:
        if x < 0:
            raise RuntimeError("negative")
        return x * 2

    assert hook(2) == 4
    assert hook(-1) is None
    assert [where for where, _ in internal_errors] == ["hook"]


def test_base_exceptions_pass_through(internal_errors: list[tuple[str, BaseException]]) -> None:
    with pytest.raises(KeyboardInterrupt), guarded("block"):
        raise KeyboardInterrupt
    assert internal_errors == []


def test_strict_mode_reports_then_reraises(
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    assert not is_strict()  # internal_errors turns strict mode off for its test
    with strict_internal_errors(), pytest.raises(ValueError, match="bug"), guarded("strict"):
        raise ValueError("bug")
    assert not is_strict()  # restored on exit
    assert [where for where, _ in internal_errors] == ["strict"]
