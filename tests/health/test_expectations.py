"""Schedule expectations: missed runs (dead man's switch) and runs that go on too long."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import gecko_otel
from gecko_otel import ConfigError, ExecutionStatus, MonitorConfig, track_collection
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs
from support.runs import run, watched


def kinds(captured: CapturedRuns) -> list[tuple[str, str, str]]:
    return [
        (a.notification.value, a.collector_type, a.rule)
        for a in captured.notifications
        if a.notification
    ]


@pytest.fixture
def clock() -> FakeClock:
    """A known wall-clock time (cron expectations fall due on it), not the real one."""
    return FakeClock(datetime(2027, 3, 1, 12, 0, 30, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def captured(clock: FakeClock) -> Iterator[CapturedRuns]:
    with watched(clock) as c:
        yield c


def test_missed_run_fires_after_interval_plus_grace_and_resolves_on_the_next_start(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    monitor = captured.monitor
    monitor.expect("pools", every=timedelta(minutes=5), grace=30)
    clock.advance(5 * 60 + 29)
    monitor.evaluate()
    assert monitor.alerts() == []  # late, but within grace
    clock.advance(2)
    monitor.evaluate()
    [alert] = monitor.alerts()
    assert (alert.rule, alert.level.value) == ("missed_run", "error")
    assert alert.message.startswith("no run started since 2027-03-01 12:05:30 UTC")
    assert alert.metadata["grace"] == 30
    with track_collection("pools"):
        # Resolved as soon as the run starts, not when it ends.
        assert kinds(captured)[-1] == ("resolved", "pools", "missed_run")
    assert monitor.alerts() == []


def test_runs_on_time_never_miss(captured: CapturedRuns, clock: FakeClock) -> None:
    monitor = captured.monitor
    monitor.expect("pools", every=60, grace=5)
    for _ in range(10):
        clock.advance(60)
        run("pools")
        monitor.evaluate()
    assert captured.notifications == []


def test_a_collector_that_never_runs_is_reported_and_listed(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    captured.monitor.expect("ghost", every=60, grace=0)
    assert captured.monitor.health()["ghost"].status.value == "unknown"
    clock.advance(61)
    captured.monitor.evaluate()
    assert kinds(captured) == [("firing", "ghost", "missed_run")]


def test_cron_expectation(captured: CapturedRuns, clock: FakeClock) -> None:
    monitor = captured.monitor
    monitor.expect("ohlcv", cron="*/15 * * * *", grace=60)  # next due 12:15:00
    clock.advance(14 * 60 + 29 + 60)  # 12:15:59: within grace
    monitor.evaluate()
    assert monitor.alerts() == []
    clock.advance(2)  # 12:16:01
    monitor.evaluate()
    [alert] = monitor.alerts()
    assert "12:15:00" in alert.message
    assert "cron '*/15 * * * *'" in alert.message


def test_a_cron_schedule_ignores_a_step_of_the_wall_clock(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    monitor = captured.monitor
    monitor.expect("ohlcv", cron="*/15 * * * *", grace=60)  # due 12:15:00
    clock.step(hours=3)  # 15:00:30 on the wall clock; no time has passed
    monitor.evaluate()
    assert monitor.alerts() == []
    clock.advance(14 * 60 + 29 + 60 + 2)  # 12:16:01 on the clock the Monitor started with
    monitor.evaluate()
    [alert] = monitor.alerts()
    assert "12:15:00" in alert.message
    run("ohlcv")  # at 15:16:01 on the wall clock: the next run is due at 15:30:00 (+ 60 s)
    assert monitor.alerts() == []
    clock.advance(14 * 60 + 58)
    monitor.evaluate()
    assert monitor.alerts() == []
    clock.advance(2)
    monitor.evaluate()
    assert [a.rule for a in monitor.alerts()] == ["missed_run"]


def test_runtime_exceeded_fires_while_the_run_goes_on(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    monitor = captured.monitor
    monitor.expect("backfill", max_runtime=timedelta(minutes=10))
    started, release = threading.Event(), threading.Event()

    def long_run() -> None:
        with track_collection("backfill"):
            started.set()
            release.wait(10)

    thread = threading.Thread(target=long_run)
    thread.start()
    assert started.wait(5)
    clock.advance(9 * 60)
    monitor.evaluate()
    assert monitor.alerts() == []
    clock.advance(2 * 60)
    monitor.evaluate()
    [alert] = monitor.alerts()
    assert (alert.rule, alert.level.value) == ("runtime_exceeded", "critical")
    assert alert.metadata["running_for"] == pytest.approx(660, abs=1)
    release.set()
    thread.join()
    monitor.evaluate()
    assert monitor.alerts() == []
    assert kinds(captured)[-1] == ("resolved", "backfill", "runtime_exceeded")


def test_decorator_expectations_are_armed_in_the_global_monitor(clock: FakeClock) -> None:
    @gecko_otel.collection("trades", every=timedelta(minutes=1), grace=10)
    def collect_trades() -> None:
        pass

    with capture_runs(MonitorConfig(min_runs_for_rate=1000), clock=clock, watchdog=False) as c:
        collect_trades()
        clock.advance(71)
        c.monitor.evaluate()
        assert [a.rule for a in c.monitor.alerts()] == ["missed_run"]
        collect_trades()
        assert c.monitor.alerts() == []


def test_decorator_with_an_explicit_monitor(captured: CapturedRuns, clock: FakeClock) -> None:
    @gecko_otel.collection("explicit", monitor=captured.monitor, every=30, grace=0)
    def collect() -> None:
        pass

    clock.advance(31)
    captured.monitor.evaluate()
    assert [a.collector_type for a in captured.monitor.alerts()] == ["explicit"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 60, "cron": "* * * * *"}, "every= or cron=, not both"),
        ({}, "needs every=, cron= or max_runtime="),
        ({"every": -1}, "every must be positive"),
        ({"every": 60, "grace": -1}, "grace must be 0 or more"),
        ({"cron": "every five minutes"}, "not a valid cron expression"),
        ({"cron": ""}, "cron must be a cron expression"),
        ({"max_runtime": 0}, "max_runtime must be positive"),
    ],
)
def test_expectation_errors_say_what_to_change(
    captured: CapturedRuns, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        captured.monitor.expect("pools", **kwargs)
    if kwargs:  # a decorator without schedule arguments simply has no expectation
        with pytest.raises(ConfigError, match=message):
            gecko_otel.collection("pools", **kwargs)


def test_skipped_runs_raise_overlap_and_missed_runs_are_recorded(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    monitor = captured.monitor
    run("pools")
    scheduled = datetime.fromtimestamp(clock.now, timezone.utc)
    monitor.record_not_started("pools", "skipped", scheduled_time=scheduled, reason="busy")
    [alert] = monitor.alerts()
    assert alert.rule == "overlap"
    clock.advance(1)
    run("pools")  # a run that started after the skip goes through
    assert monitor.alerts() == []
    monitor.record_not_started("pools", ExecutionStatus.MISSED, scheduled_time=scheduled)
    latest = monitor.history("pools", limit=4)
    assert {r.status for r in latest} >= {ExecutionStatus.SKIPPED, ExecutionStatus.MISSED}
    missed = next(r for r in latest if r.status is ExecutionStatus.MISSED)
    assert missed.duration_seconds is None
    assert missed.end_time is None
    assert missed.start_time == scheduled.replace(microsecond=scheduled.microsecond)
    skipped = next(r for r in latest if r.status is ExecutionStatus.SKIPPED)
    assert skipped.warnings == ("busy",)
    with pytest.raises(ConfigError, match="status 'missed' or 'skipped'"):
        monitor.record_not_started("pools", "failure", scheduled_time=scheduled)
    with pytest.raises(ConfigError, match="timezone-aware"):
        monitor.record_not_started("pools", "missed", scheduled_time=datetime(2027, 1, 1))


def test_schedule_rules_show_in_health(captured: CapturedRuns, clock: FakeClock) -> None:
    captured.monitor.expect("ghost", every=60, grace=0)
    run("pools")
    captured.monitor.expect("pools", every=60, grace=0)
    clock.advance(61)
    health = captured.monitor.health()
    assert health["ghost"].status.value == "critical"  # missed_run is level error
    assert health["ghost"].rules == ("missed_run",)
    assert health["pools"].status.value == "critical"
    assert "missed_run" in health["pools"].rules
    assert captured.monitor.system_health().overall_status.value == "critical"


def test_timezone_must_be_a_tzinfo_for_a_cron(captured: CapturedRuns) -> None:
    from zoneinfo import ZoneInfo

    with pytest.raises(ConfigError, match="timezone must be a tzinfo"):
        captured.monitor.expect("pools", cron="0 9 * * *", timezone="Europe/Paris")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="timezone= applies to cron= only"):
        captured.monitor.expect("pools", every=60, timezone=ZoneInfo("Europe/Paris"))
    captured.monitor.expect("pools", cron="0 9 * * *", timezone=ZoneInfo("Europe/Paris"))
    due = captured.monitor.export()["expectations"]["pools"]["next_due"]
    assert due.endswith(("07:00:00+00:00", "08:00:00+00:00"))  # 09:00 in Paris, in UTC


def test_record_not_started_rejects_other_statuses_with_a_config_error(
    captured: CapturedRuns,
) -> None:
    now = datetime.now(timezone.utc)
    for status in ("foo", "success", ExecutionStatus.FAILURE):
        with pytest.raises(ConfigError, match="status 'missed' or 'skipped'"):
            captured.monitor.record_not_started("pools", status, scheduled_time=now)


def test_extra_span_attributes_are_redacted_like_metadata(captured: CapturedRuns) -> None:
    with track_collection("pools", attributes={"faas.trigger": "timer", "api_token": "sk-1"}):
        pass
    [span] = captured.spans
    assert span.attributes["faas.trigger"] == "timer"
    assert span.attributes["api_token"] == "[REDACTED]"


def test_unexpect_withdraws_and_resolves(captured: CapturedRuns, clock: FakeClock) -> None:
    monitor = captured.monitor
    monitor.expect("retired", every=60, grace=0)
    clock.advance(61)
    monitor.evaluate()
    assert [a.rule for a in monitor.alerts()] == ["missed_run"]
    assert monitor.unexpect("retired") is True
    assert monitor.unexpect("retired") is False
    assert monitor.alerts() == []
    assert monitor.expectation("retired") is None


def test_first_due_sets_the_first_due_time(captured: CapturedRuns, clock: FakeClock) -> None:
    later = datetime.fromtimestamp(clock.now + 3600, timezone.utc)
    captured.monitor.expect("nightly", every=300, grace=0, first_due=later)
    clock.advance(600)  # two intervals, but the first run is not due yet
    captured.monitor.evaluate()
    assert captured.monitor.alerts() == []
    clock.advance(3001)
    captured.monitor.evaluate()
    assert [a.rule for a in captured.monitor.alerts()] == ["missed_run"]


def test_runtime_exceeded_resolves_when_the_run_ends(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    monitor = captured.monitor
    monitor.expect("backfill", max_runtime=60)
    with track_collection("backfill"):
        clock.advance(61)
        monitor.evaluate()
        assert [a.rule for a in monitor.alerts()] == ["runtime_exceeded"]
    # No tick needed: the run's end resolves it.
    assert kinds(captured)[-1] == ("resolved", "backfill", "runtime_exceeded")


def test_cron_due_time_moves_on_after_each_run(captured: CapturedRuns, clock: FakeClock) -> None:
    monitor = captured.monitor
    monitor.expect("ohlcv", cron="*/15 * * * *", grace=60)  # due 12:15
    for _ in range(4):
        clock.advance(15 * 60)
        run("ohlcv")  # on time every quarter hour
        monitor.evaluate()
    assert monitor.alerts() == []
    clock.advance(15 * 60 + 61)
    monitor.evaluate()
    assert [a.rule for a in monitor.alerts()] == ["missed_run"]


def test_overlap_stays_until_a_run_that_started_after_the_skip(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    import time

    monitor = captured.monitor
    with track_collection("trades"):  # the long run (its duration is measured for real)
        time.sleep(0.05)
        monitor.record_not_started("trades", "skipped", scheduled_time=datetime.now(timezone.utc))
        time.sleep(0.05)
    # The long run that caused the skip has ended: still an overlap.
    assert [a.rule for a in monitor.alerts()] == ["overlap"]
    clock.advance(1)
    run("trades")
    assert monitor.alerts() == []


def test_a_collector_whose_runs_were_all_missed_is_not_healthy(
    captured: CapturedRuns,
) -> None:
    for _ in range(5):
        captured.monitor.record_not_started(
            "ghost", "missed", scheduled_time=datetime.now(timezone.utc)
        )
    health = captured.monitor.health("ghost")["ghost"]
    assert health.status.value == "unknown"
    assert health.health_score is None
    assert health.total_executions == 5


def test_a_forked_child_does_not_inherit_expectations(clock: FakeClock) -> None:
    import os

    with capture_runs(MonitorConfig(min_runs_for_rate=1000), clock=clock, watchdog=False) as c:
        c.monitor.expect("parent_job", every=60, grace=0)
        pid = os.fork()
        if pid == 0:
            clock.advance(120)
            c.monitor.evaluate()
            os._exit(0 if c.monitor.alerts() == [] else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert c.monitor.expectation("parent_job") is not None
