"""gecko_otel.testing and the pytest plugin work for users' own test suites."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import _state
from gecko_otel.testing import capture_runs, isolated_state, reset


def test_capture_runs_installs_and_restores_the_global_monitor() -> None:
    assert _state.monitor() is None
    with capture_runs() as captured:
        assert _state.monitor() is captured.monitor

        @gecko_otel.collection("c")
        def collect() -> None:
            gecko_otel.current_run().add_records(2)  # type: ignore[union-attr]

        collect()
        [run] = captured.runs
        assert run.records_collected == 2
        assert captured.runs_of("c") == [run]
        assert [s.name for s in captured.spans] == ["c"]
        captured.clear()
        assert captured.spans == ()
    assert _state.monitor() is None
    assert captured.monitor.is_shutdown


def test_plugin_is_registered_as_pytest11_entry_point() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("gecko_otel") == "gecko_otel._pytest_plugin"


def test_fixture_in_a_users_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import gecko_otel
        from gecko_otel import ExecutionStatus

        @gecko_otel.collection("pool_collector")
        def collect_pools():
            gecko_otel.current_run().add_records(120)

        def test_records(gecko_otel_runs):
            collect_pools()
            [run] = gecko_otel_runs.runs
            assert run.status is ExecutionStatus.SUCCESS
            assert run.records_collected == 120

        def test_wrong_expectation_fails(gecko_otel_runs):
            collect_pools()
            assert gecko_otel_runs.runs[0].records_collected == 121
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)


def test_reset_shuts_down_and_forgets_the_global_monitor_and_expectations() -> None:
    with isolated_state():
        providers = {"tracer_provider": TracerProvider(), "meter_provider": MeterProvider()}
        monitor = gecko_otel.setup(**providers)

        @gecko_otel.collection("declared", every=60)
        def collect() -> None:
            return None

        assert _state.monitor() is monitor
        assert monitor.expectation("declared") is not None
        reset()
        assert _state.monitor() is None
        assert monitor.is_shutdown
        again = gecko_otel.setup(**providers)
        try:
            assert again is not monitor
            assert again.expectation("declared") is None  # the declaration was forgotten
        finally:
            again.shutdown()


def test_isolated_state_undoes_what_the_block_installed_and_declared() -> None:
    before = _state.monitor()
    with isolated_state(), capture_runs() as captured:

        @gecko_otel.collection("inside", every=60)
        def collect() -> None:
            return None

        assert captured.monitor.expectation("inside") is not None
    assert _state.monitor() is before
    with capture_runs() as later:
        assert later.monitor.expectation("inside") is None
