"""Health evaluation: each rule firing and clearing, on an injectable clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

import gecko_otel
from gecko_otel import (
    CollectionStatus,
    CollectorThresholds,
    ExecutionStatus,
    MonitorConfig,
    semconv,
    track_collection,
)
from gecko_otel._values.health import health_score
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs
from support.runs import run


@pytest.fixture
def watched(clock: FakeClock) -> Iterator[CapturedRuns]:
    with capture_runs(MonitorConfig(), clock=clock, watchdog=False) as captured:
        yield captured


def health(captured: CapturedRuns, collector: str) -> gecko_otel.CollectorHealth:
    return captured.monitor.health(collector)[collector]


def test_unknown_before_the_first_run(watched: CapturedRuns) -> None:
    assert watched.monitor.health() == {}
    unknown = health(watched, "pools")
    assert unknown.status is CollectionStatus.UNKNOWN
    assert unknown.health_score is None
    assert watched.monitor.health() == {}  # asking does not register it
    run("pools")
    assert health(watched, "pools").status is CollectionStatus.HEALTHY


def test_consecutive_failures_turn_critical_and_success_clears(
    watched: CapturedRuns, clock: FakeClock
) -> None:
    run("pools")
    for expected in (1, 2):
        run("pools", fail=True)
        h = health(watched, "pools")
        assert h.consecutive_failures == expected
        assert h.status is not CollectionStatus.CRITICAL
    run("pools", fail=True)
    h = health(watched, "pools")
    assert h.status is CollectionStatus.CRITICAL
    assert "consecutive_failures" in h.rules
    assert h.issues[h.rules.index("consecutive_failures")] == (
        "3 consecutive failed runs (threshold 3)"
    )
    assert h.last_failure is not None
    assert h.last_failure.timestamp() == pytest.approx(clock.now)
    run("pools")
    h = health(watched, "pools")
    assert h.consecutive_failures == 0
    assert "consecutive_failures" not in h.rules


def test_timeouts_count_as_failures_and_cancellations_do_not(watched: CapturedRuns) -> None:
    for exc in (TimeoutError(), TimeoutError(), KeyboardInterrupt(), TimeoutError()):
        with pytest.raises(type(exc)), track_collection("c"):
            raise exc
    assert health(watched, "c").consecutive_failures == 3


def test_success_rate_needs_min_runs(clock: FakeClock) -> None:
    config = MonitorConfig(max_consecutive_failures=100, min_runs_for_rate=5)
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        run("pools", fail=True)
        assert health(captured, "pools").status is CollectionStatus.HEALTHY  # 1 run: no verdict
        assert health(captured, "pools").success_rate_24h == 0.0
        for _ in range(3):
            run("pools")
        run("pools", fail=True)  # 5 runs, 60 %
        h = health(captured, "pools")
        assert h.runs_in_window == 5
        assert h.success_rate_24h == 60.0
        assert h.status is CollectionStatus.WARNING
        assert h.rules == ("low_success_rate",)
        for _ in range(15):
            run("pools")  # 18/20 = 90 %
        assert health(captured, "pools").status is CollectionStatus.HEALTHY


def test_partial_runs_count_as_successful(watched: CapturedRuns) -> None:
    for _ in range(5):
        with track_collection("pools") as r:
            r.warn("skipped a page")
    h = health(watched, "pools")
    assert h.success_rate_24h == 100.0
    assert h.status is CollectionStatus.HEALTHY


def test_window_forgets_old_runs(clock: FakeClock) -> None:
    config = MonitorConfig(max_consecutive_failures=100, success_rate_window=timedelta(hours=1))
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        for _ in range(5):
            run("pools", fail=True)
        assert health(captured, "pools").status is CollectionStatus.WARNING
        clock.advance(minutes=61)
        for _ in range(5):
            run("pools")
        h = health(captured, "pools")
        assert h.runs_in_window == 5
        assert h.success_rate_24h == 100.0
        assert h.total_executions == 10
        assert h.status is CollectionStatus.HEALTHY
        clock.advance(hours=3)  # nothing left in the window
        h = health(captured, "pools")
        assert h.runs_in_window == 0
        assert h.success_rate_24h is None
        assert h.average_execution_time is None


def test_slow_execution_and_p95(clock: FakeClock) -> None:
    config = MonitorConfig(max_execution_time=0.02)
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        run("slow", sleep=0.03)
        h = health(captured, "slow")
        assert h.status is CollectionStatus.WARNING
        assert h.rules == ("slow_execution",)
        assert h.average_execution_time is not None and h.average_execution_time >= 0.03
        assert h.p95_execution_time is not None and h.p95_execution_time >= 0.03
        for _ in range(10):
            run("slow")
        assert health(captured, "slow").status is CollectionStatus.HEALTHY


def test_low_throughput_is_off_by_default_and_per_collector(clock: FakeClock) -> None:
    config = MonitorConfig(
        collectors={"trades": CollectorThresholds(min_records_per_second=1_000_000)}
    )
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        run("trades", records=1, sleep=0.001)
        run("pools", records=1, sleep=0.001)
        assert health(captured, "trades").rules == ("low_throughput",)
        assert health(captured, "pools").status is CollectionStatus.HEALTHY
        assert health(captured, "trades").records_per_second is not None


def test_low_throughput_fires_and_clears(clock: FakeClock) -> None:
    config = MonitorConfig(
        min_records_per_second=1000,
        min_runs_for_rate=1000,
        success_rate_window=timedelta(hours=1),
    )
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        run("trades", records=1, sleep=0.01)  # 100 records/s at most
        assert health(captured, "trades").rules == ("low_throughput",)
        [alert] = captured.monitor.alerts()
        assert alert.rule == "low_throughput"
        assert alert.metadata["threshold"] == 1000
        clock.advance(hours=2)  # the slow run leaves the window
        run("trades", records=1_000_000, sleep=0.01)
        assert health(captured, "trades").rules == ()
        assert captured.monitor.alerts() == []
        assert [a.notification.value for a in captured.notifications if a.notification] == [
            "firing",
            "resolved",
        ]


def test_stale_on_the_clock_without_any_run(watched: CapturedRuns, clock: FakeClock) -> None:
    run("pools")
    clock.advance(hours=5, minutes=59)
    assert health(watched, "pools").status is CollectionStatus.HEALTHY
    clock.advance(minutes=1)
    h = health(watched, "pools")
    assert h.status is CollectionStatus.WARNING
    assert h.rules == ("stale",)
    assert h.issues == ("last successful run 6.0 h ago (threshold 6.0 h)",)
    clock.advance(hours=6)
    assert health(watched, "pools").status is CollectionStatus.CRITICAL  # escalated
    run("pools")
    assert health(watched, "pools").status is CollectionStatus.HEALTHY


def test_never_successful_collector_goes_stale(watched: CapturedRuns, clock: FakeClock) -> None:
    run("broken", fail=True)
    clock.advance(hours=7)
    h = health(watched, "broken")
    assert "stale" in h.rules
    assert h.last_success is None


def test_health_score_formula() -> None:
    t = MonitorConfig(
        max_execution_time=100, min_records_per_second=10, stale_after=3600
    ).thresholds_for("any")
    assert health_score(100, 50, 20, t) == 100.0
    assert health_score(50, 50, 20, t) == 75.0  # 0.5*0.5 + 0.3 + 0.2
    assert health_score(100, 200, 20, t) == 85.0  # duration part 100/200
    assert health_score(100, 50, 5, t) == 90.0  # records part 5/10
    assert health_score(None, None, None, t) == 100.0
    assert health_score(100, 50, 0.0, t) == 80.0  # no records at all
    no_threshold = dataclasses.replace(t, min_records_per_second=None)
    assert health_score(100, 50, 0.0, no_threshold) == 100.0  # full marks without one


def test_system_health_is_the_worst_collector(watched: CapturedRuns) -> None:
    run("good")
    for _ in range(3):
        run("bad", fail=True)
    system = watched.monitor.system_health()
    assert system.overall_status is CollectionStatus.CRITICAL
    assert system.total_collectors == 2
    assert system.healthy_collectors == 1
    assert system.critical_collectors == 1
    assert system.warning_collectors == system.unknown_collectors == 0
    good, bad = health(watched, "good"), health(watched, "bad")
    assert good.health_score is not None and bad.health_score is not None
    assert system.average_health_score == round((good.health_score + bad.health_score) / 2, 2)
    assert system.active_alerts["critical"] == 1
    assert system.dropped == {
        "evicted_collectors": 0,
        "internal_errors": gecko_otel.internal_error_count(),
        "dropped_notifications": 0,
        "handler_errors": 0,
        "handler_timeouts": 0,
    }
    assert system.to_dict()["overall_status"] == "critical"


def test_health_gauges(watched: CapturedRuns, clock: FakeClock) -> None:
    run("pools", records=40)
    for _ in range(3):
        run("broken", fail=True)
    metrics = watched.metrics()

    def by_collector(name: str) -> dict[str, float]:
        return {attrs[semconv.COLLECTOR_TYPE]: value for attrs, value in metrics[name]}

    assert by_collector(semconv.METRIC_HEALTH_STATUS) == {"pools": 1, "broken": 3}
    assert by_collector(semconv.METRIC_CONSECUTIVE_FAILURES) == {"pools": 0, "broken": 3}
    assert by_collector(semconv.METRIC_LAST_SUCCESS) == {
        "pools": pytest.approx(clock.now),
        "broken": 0,
    }
    assert by_collector(semconv.METRIC_HEALTH_SCORE)["pools"] == 100.0
    # The baseline: learned from successful runs only.
    assert by_collector(semconv.METRIC_USUAL_RECORDS) == {"pools": pytest.approx(40)}
    assert set(by_collector(semconv.METRIC_USUAL_DURATION)) == {"pools"}
    assert by_collector(semconv.METRIC_LAST_RECORDS) == {"pools": pytest.approx(clock.now)}
    # Per collector and rule, so a Prometheus rule or a panel can say which one.
    assert metrics[semconv.METRIC_ALERTS_ACTIVE] == [
        (
            {
                semconv.COLLECTOR_TYPE: "broken",
                semconv.ALERT_RULE: "consecutive_failures",
                semconv.ALERT_LEVEL: "critical",
            },
            1,
        )
    ]


def test_a_collector_that_never_succeeded_has_a_last_success_series(
    watched: CapturedRuns,
) -> None:
    # A stale rule written on the series must see exactly the worst collectors.
    run("broken", fail=True)
    watched.monitor.expect("never_ran", every=60)
    metrics = watched.metrics()
    last_success = {a[semconv.COLLECTOR_TYPE]: v for a, v in metrics[semconv.METRIC_LAST_SUCCESS]}
    assert last_success == {"broken": 0.0, "never_ran": 0.0}


def test_runs_that_never_started_count_but_not_in_the_success_rate(
    watched: CapturedRuns,
) -> None:
    from gecko_otel._values.records import ExecutionRecord, FinishedRun

    monitor = watched.monitor
    record = ExecutionRecord(
        collector_type="scheduled",
        execution_id="x",
        status=ExecutionStatus.MISSED,
        start_time=datetime.now(timezone.utc),
        end_time=None,
        duration_seconds=None,
    )
    monitor._pipeline.add(FinishedRun.from_record(record))
    h = health(watched, "scheduled")
    assert h.total_executions == 1
    assert h.runs_in_window == 0  # missed/skipped runs have rules of their own
    assert h.success_rate_24h is None
    assert h.average_execution_time is None
    for _ in range(5):
        run("scheduled")
        monitor.record_not_started(
            "scheduled", "skipped", scheduled_time=datetime.now(timezone.utc)
        )
    h = health(watched, "scheduled")
    assert h.success_rate_24h == 100.0  # skipped runs do not drag it down
    assert h.rules == ("overlap",)
