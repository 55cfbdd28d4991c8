"""Guarantee: a step of the wall clock alone neither misorders history nor fires an alert.

NTP (or an operator) may step the wall clock by hours. History sorted runs by
their wall-clock start, so after a step back ``history(limit=3)`` listed the
runs from before the step; a run's stored end, a second wall reading, could
precede its start; and a forward step of three hours one second after a
success fired ``stale`` and ``missed_run`` at once. Order and elapsed time now
come from the monotonic clock; wall times only bridge a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import gecko_otel
from gecko_otel import MonitorConfig, Notification
from gecko_otel.testing import FakeClock, capture_runs
from support.store_helpers import stored_monitor
from support.store_procs import sql_rows

HOUR = 3600


@pytest.fixture
def step_span_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Step the wall clock the OpenTelemetry SDK stamps spans with (seconds, signed)."""
    offset = [0]
    monkeypatch.setattr(
        "opentelemetry.sdk.trace.time_ns", lambda: time.time_ns() + offset[0], raising=True
    )

    def step(seconds: float) -> None:
        offset[0] += int(seconds * 1e9)

    return step


def one_run(monitor: gecko_otel.Monitor, during: Callable[[], None] = lambda: None) -> str:
    with gecko_otel.track_collection("pools", monitor=monitor) as run:
        during()
    return run.execution_id


def test_a_step_back_between_runs_leaves_history_newest_first(
    step_span_clock: Callable[[float], None],
) -> None:
    with capture_runs(watchdog=False) as captured:
        m = captured.monitor
        ids = [one_run(m) for _ in range(3)]
        step_span_clock(-HOUR)
        ids += [one_run(m) for _ in range(2)]
        assert [r.execution_id for r in m.history(limit=3)] == ids[:-4:-1]
        assert [r.execution_id for r in m.history()] == ids[::-1]
        assert [r.execution_id for r in m.history("pools", limit=2)] == ids[:-3:-1]


def test_a_step_back_during_a_run_stores_no_end_before_its_start(
    tmp_path: Path, step_span_clock: Callable[[float], None]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with stored_monitor(url) as sm:
        one_run(sm.monitor)
        one_run(sm.monitor, during=lambda: step_span_clock(-HOUR))
        one_run(sm.monitor)
        assert sm.monitor.force_flush()
        for record in sm.monitor.history():
            assert record.end_time is not None
            assert record.end_time >= record.start_time
        assert {span.end_time >= span.start_time for span in sm.spans.get_finished_spans()} == {
            True
        }
    rows = sql_rows(url, "SELECT start_time, end_time, duration_seconds FROM execution_history")
    assert len(rows) == 3
    for started, ended, duration in rows:
        started_at, ended_at = datetime.fromisoformat(started), datetime.fromisoformat(ended)
        assert ended_at >= started_at
        assert (ended_at - started_at).total_seconds() == pytest.approx(duration, abs=1e-5)


def fired(notifications: list[gecko_otel.Alert]) -> list[str]:
    return [a.rule for a in notifications if a.notification is Notification.FIRING]


def test_a_forward_step_after_a_success_fires_neither_stale_nor_missed_run() -> None:
    clock = FakeClock()
    config = MonitorConfig(stale_after=timedelta(hours=1))
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        m = captured.monitor
        m.expect("pools", every=timedelta(minutes=5))
        one_run(m)
        clock.advance(1)
        clock.step(hours=3)
        m.evaluate()
        assert fired(captured.notifications) == []
        assert m.health("pools")["pools"].rules == ()
        # Time that really passes still counts, on the monotonic clock: the
        # run due 5 minutes (+ 60 s grace) after the last start is missed...
        clock.advance(minutes=6)
        m.evaluate()
        assert fired(captured.notifications) == ["missed_run"]
        # ... and an hour without a success is stale, whatever the wall clock says.
        clock.step(hours=-5)
        clock.advance(minutes=54)
        m.evaluate()
        assert fired(captured.notifications) == ["missed_run", "stale"]


def test_a_step_back_does_not_delay_missed_run() -> None:
    clock = FakeClock()
    with capture_runs(clock=clock, watchdog=False) as captured:
        m = captured.monitor
        m.expect("pools", every=timedelta(minutes=5), grace=0)
        one_run(m)
        clock.step(hours=-3)
        clock.advance(minutes=5, seconds=1)
        m.evaluate()
        assert fired(captured.notifications) == ["missed_run"]


def test_after_a_restart_staleness_starts_from_the_stored_wall_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    stale = {"stale_after": timedelta(hours=1)}
    with stored_monitor(url, **stale) as sm:
        one_run(sm.monitor)  # its span's wall time is stored as the last success
        assert sm.monitor.force_flush()
    succeeded = time.time()

    # Restarted ten minutes later: the stored wall time says ten minutes ago.
    clock = FakeClock(succeeded + 10 * 60)
    with stored_monitor(url, clock=clock, **stale) as sm:
        m = sm.monitor
        m.evaluate()
        assert m.health("pools")["pools"].rules == ()
        clock.step(hours=3)  # a step after the restart changes nothing
        m.evaluate()
        assert m.health("pools")["pools"].rules == ()
        clock.advance(minutes=49)
        m.evaluate()
        assert m.health("pools")["pools"].rules == ()
        clock.advance(minutes=2)  # 61 minutes since the stored success
        m.evaluate()
        assert m.health("pools")["pools"].rules == ("stale",)
        assert m.force_flush()
        assert fired(sm.notifications) == ["stale"]

    # Restarted two hours later: stale at once, from the stored wall time alone.
    with stored_monitor(url, clock=FakeClock(succeeded + 2 * HOUR), **stale) as sm:
        sm.monitor.evaluate()
        assert sm.monitor.health("pools")["pools"].rules == ("stale",)
