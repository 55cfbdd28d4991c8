"""Guarantee: a collector that starts failing is always evaluated, whatever the cardinality.

At ``max_collectors`` a new collector used to get no history, no health and no
alerts, counted only in ``dropped_runs``: a failing collector past the limit
never alerted. Now the least recently seen collector makes room (one that last
succeeded and has no active alert first), a warning is logged once, and
``system_health().limits`` shows the figures. Every tracked collector keeps
its own metric series: the SDK's 2,000 per metric no longer merges them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gecko_otel import AlertLevel, CollectionStatus, MonitorConfig
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs
from support.runs import run, watched
from support.store_helpers import stored_monitor

CAP = 50


@pytest.fixture
def full(clock: FakeClock) -> Iterator[CapturedRuns]:
    """A Monitor with ``CAP`` healthy collectors tracked, ``healthy_0`` the least recent."""
    with watched(clock, max_collectors=CAP) as captured:
        for i in range(CAP):
            run(f"healthy_{i}")
            clock.advance(1)
        yield captured


def evictions_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "max_collectors=" in r.getMessage()
    ]


def test_a_new_collector_that_fails_gets_health_and_its_alert(
    full: CapturedRuns, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        run("failing", fail=True)
    monitor = full.monitor
    assert monitor.health("failing")["failing"].status is CollectionStatus.CRITICAL
    fired = [a for a in full.notifications if a.collector_type == "failing"]
    assert [(a.rule, a.level) for a in fired] == [("consecutive_failures", AlertLevel.CRITICAL)]
    # The least recently seen healthy collector made room, and only it.
    assert "healthy_0" not in monitor.collector_types()
    assert {"healthy_1", f"healthy_{CAP - 1}", "failing"} <= set(monitor.collector_types())
    for i in range(10):
        run(f"newcomer_{i}")
    assert len(evictions_logged(caplog)) == 1  # once, not per eviction
    limits = monitor.system_health().limits
    assert limits["max_collectors"] == CAP
    assert limits["tracked_collectors"] == CAP
    assert limits["evicted_collectors"] == 11
    assert monitor.system_health().dropped["evicted_collectors"] == 11
    assert monitor.system_health().total_collectors == CAP


def test_eviction_prefers_healthy_then_failed_then_alerting(clock: FakeClock) -> None:
    with watched(clock, max_collectors=3) as captured:
        monitor = captured.monitor
        for _ in range(3):
            run("alerting", fail=True)  # the least recent, with a firing alert
        run("failed_once", fail=True)
        run("healthy")
        run("new_1")
        assert monitor.collector_types() == ["alerting", "failed_once", "new_1"]
        run("new_2", fail=True)  # new_1 is healthy: it goes, though more recent
        assert monitor.collector_types() == ["alerting", "failed_once", "new_2"]
        monitor.resolve_alert(monitor.alerts()[0].id)  # alerting: no alert, last run failed
        run("alerting", fail=True)  # fires again
        for _ in range(2):
            run("new_2", fail=True)
        run("new_3", fail=True)  # every one alerts but failed_once
        assert monitor.collector_types() == ["alerting", "new_2", "new_3"]


def test_when_every_collector_alerts_the_least_recent_goes_and_its_alert_resolves(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with watched(clock, max_collectors=2) as captured:
        monitor = captured.monitor
        for name in ("first", "second"):
            for _ in range(3):
                run(name, fail=True)
        for _ in range(3):
            run("third", fail=True)
        assert monitor.collector_types() == ["second", "third"]
        assert {a.collector_type for a in monitor.alerts()} == {"second", "third"}
        resolved = [a for a in captured.notifications if a.notification == "resolved"]
        assert [a.collector_type for a in resolved] == ["first"]
        assert any("every one of the 2 tracked" in r.getMessage() for r in caplog.records)


def test_a_collector_that_went_stale_is_kept_over_a_healthy_one(clock: FakeClock) -> None:
    with watched(clock, max_collectors=2, stale_after=60) as captured:
        monitor = captured.monitor
        run("stopped")
        clock.advance(61)
        monitor.evaluate()  # "stopped" alerts (stale) though its last run succeeded
        run("recent")
        run("new")
        assert monitor.collector_types() == ["new", "stopped"]
        assert [a.rule for a in monitor.alerts()] == ["stale"]


def test_five_times_the_cap_keeps_every_structure_at_the_cap(full: CapturedRuns) -> None:
    monitor = full.monitor
    for i in range(5 * CAP):
        run(f"churn_{i}", fail=i % 7 == 0)
        if i % 50 == 0:
            monitor.system_health()  # fills the p95 cache and the health snapshots
            monitor.force_flush(5_000)
    monitor.force_flush(5_000)
    pipeline = monitor._pipeline
    sizes = {
        "history": len(pipeline._history._collectors),
        "health": len(pipeline.evaluator._states),
        "alerts": len(pipeline.engine._active),
        "p95": len(pipeline._p95),
        "published": len(pipeline._published),
        "roster": len(pipeline.roster),
    }
    assert max(sizes.values()) <= CAP, sizes
    assert sizes["history"] == sizes["health"] == CAP
    gauge = full.metrics()["gecko.collector.health_score"]
    assert len(gauge) == CAP  # the observable gauges report the tracked collectors only
    assert monitor.system_health().limits["evicted_collectors"] == 5 * CAP


def test_collectors_up_to_max_collectors_keep_their_own_metric_series() -> None:
    collectors = 2_500  # past the SDK's default of 2,000 series per metric
    with capture_runs(MonitorConfig(max_collectors=collectors), watchdog=False) as captured:
        for i in range(collectors):
            run(f"c{i}")
        metrics = captured.metrics()
        limits = captured.monitor.system_health().limits
    for name in ("gecko.collection.duration", "gecko.collector.health_score"):
        attributes = [attrs for attrs, _ in metrics[name]]
        assert not [a for a in attributes if a.get("otel.metric.overflow")], name
        assert len({a["gecko.collector.type"] for a in attributes}) == collectors, name
    assert limits["metric_series_limit"] == 8 * collectors
    assert limits["metric_series_limit_reached"] is False


def test_reaching_the_metric_series_limit_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    config = MonitorConfig(max_collectors=3, max_metric_series=3)
    with capture_runs(config, watchdog=False) as captured:
        for i in range(6):
            run(f"c{i}")
        metrics = captured.metrics()
        limits = captured.monitor.system_health().limits
    assert limits["metric_series_limit"] == 3
    assert limits["metric_series_limit_reached"] is True
    overflow = [a for a, _ in metrics["gecko.collection.duration"] if a.get("otel.metric.overflow")]
    assert len(overflow) == 1
    said = [r for r in caplog.records if "series reached" in r.getMessage()]
    assert len(said) == 1


def test_an_evicted_collectors_stored_history_stays_queryable(
    tmp_path: Path, clock: FakeClock
) -> None:
    url = f"sqlite:///{tmp_path / 'gecko.db'}"
    with stored_monitor(url, clock=clock, max_collectors=2) as stored:
        monitor = stored.monitor
        for _ in range(3):
            run("evicted", monitor=monitor)
        run("second", monitor=monitor)
        run("third", monitor=monitor)
        assert "evicted" not in monitor.health()
        assert monitor.system_health().limits["evicted_collectors"] == 1
        assert len(monitor.history("evicted")) == 3  # from the database
        assert monitor.statistics("evicted").total_executions == 3
        run("evicted", monitor=monitor)  # back: fresh in memory, all of it in the store
        assert monitor.health("evicted")["evicted"].total_executions == 1
        assert len(monitor.history("evicted")) == 4
