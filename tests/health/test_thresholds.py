"""Thresholds changed while collectors run: Monitor.set_thresholds, the stored
layer, and the order in which the layers apply."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from gecko_otel import Alert, AlertState, CollectorThresholds, ConfigError, MonitorConfig
from gecko_otel._health.thresholds import check_values, describe, in_force
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs
from support.runs import run, watched


@pytest.fixture
def captured(clock: FakeClock) -> Iterator[CapturedRuns]:
    with watched(clock) as c:
        yield c


def heard(captured: CapturedRuns) -> list[tuple[str, str]]:
    return [
        (a.notification.value if a.notification else "", a.rule) for a in captured.notifications
    ]


def test_lowering_a_threshold_fires_at_once_without_a_new_run(captured: CapturedRuns) -> None:
    run("pools", fail=True)
    run("pools", fail=True)
    assert captured.monitor.alerts() == []
    captured.monitor.set_thresholds("pools", max_consecutive_failures=2)
    assert heard(captured) == [("firing", "consecutive_failures")]
    [alert] = captured.monitor.alerts()
    assert alert.metadata == {"consecutive_failures": 2, "threshold": 2}


def test_raising_a_threshold_resolves_at_once(captured: CapturedRuns) -> None:
    for _ in range(3):
        run("pools", fail=True)
    [alert] = captured.monitor.alerts()
    # A run-based alert otherwise waits for recovery_threshold good runs; no
    # run will come to prove a threshold change, so it resolves now.
    captured.monitor.set_thresholds(max_consecutive_failures=5)
    assert heard(captured) == [
        ("firing", "consecutive_failures"),
        ("resolved", "consecutive_failures"),
    ]
    [after] = captured.monitor.alerts(active_only=False)
    assert after.id == alert.id and after.state is AlertState.RESOLVED


def test_a_change_of_one_collector_leaves_the_others(captured: CapturedRuns) -> None:
    for name in ("pools", "trades"):
        run(name, fail=True)
        run(name, fail=True)
    captured.monitor.set_thresholds("trades", max_consecutive_failures=2)
    assert [a.collector_type for a in captured.monitor.alerts()] == ["trades"]
    assert captured.monitor.thresholds("pools").max_consecutive_failures == 3
    assert captured.monitor.thresholds("trades").max_consecutive_failures == 2
    assert captured.monitor.config.collectors["trades"] == CollectorThresholds(
        max_consecutive_failures=2
    )


def test_none_puts_a_collector_back_on_the_global_value(captured: CapturedRuns) -> None:
    monitor = captured.monitor
    monitor.set_thresholds("pools", stale_after=timedelta(minutes=5), alert_cooldown=60)
    monitor.set_thresholds("pools", stale_after=None)
    assert monitor.config.collectors["pools"] == CollectorThresholds(alert_cooldown=60)
    assert monitor.thresholds("pools").stale_after == 6 * 3600
    monitor.set_thresholds("pools", alert_cooldown=None)
    assert "pools" not in monitor.config.collectors  # nothing of its own left


def test_a_global_change_reaches_collectors_seen_later(captured: CapturedRuns) -> None:
    captured.monitor.set_thresholds(max_consecutive_failures=1)
    assert captured.monitor.config.max_consecutive_failures == 1
    run("new_one", fail=True)
    assert [a.collector_type for a in captured.monitor.alerts()] == ["new_one"]


def test_a_throughput_rule_switched_on_sees_the_next_quiet_run() -> None:
    # Without a throughput rule, quiet runs are processed in batches; once one
    # is set, each run must be evaluated as it ends.
    with capture_runs(MonitorConfig(min_runs_for_rate=1000), watchdog=False) as c:
        got: list[Alert] = []
        c.monitor.add_alert_handler(got.append)  # read directly: a flush would drain
        run("pools", records=1000, sleep=0.01)  # at most 0.5 s: over 2,000 a second
        c.monitor.set_thresholds(min_records_per_second=1000)
        run("pools", records=0, sleep=1.0)  # the window falls under 1,000 a second
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [a.rule for a in got] == ["low_throughput"]


@pytest.mark.parametrize(
    ("collector", "changes", "message"),
    [
        (None, {}, "give at least one threshold"),
        (None, {"max_consecutive_failure": 2}, "max_consecutive_failure is not a threshold"),
        (None, {"success_rate_window": 60}, "success_rate_window is not a threshold"),
        (None, {"max_consecutive_failures": 0}, "must be a positive integer"),
        (None, {"max_consecutive_failures": None}, "must be a positive integer"),
        (None, {"min_success_rate": 101}, "between 0 and 100"),
        ("pools", {"stale_after": "2h"}, "seconds (a number) or a timedelta"),
        ("", {"stale_after": 60}, "collector_type must be a non-empty string"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(
    captured: CapturedRuns, collector: str | None, changes: dict[str, Any], message: str
) -> None:
    before = captured.monitor.config
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        captured.monitor.set_thresholds(collector, **changes)
    assert captured.monitor.config is before
    assert captured.monitor.thresholds("pools") == before.thresholds_for("pools")


def test_stored_layers_win_over_configured_ones() -> None:
    config = MonitorConfig(
        max_execution_time=100,
        stale_after=600,
        collectors={"pools": CollectorThresholds(max_execution_time=50, alert_cooldown=5)},
    )
    assert in_force(config, {}, "pools") == config.thresholds_for("pools")
    stored = {
        None: {"max_execution_time": 20.0, "stale_after": 60.0},
        "pools": {"stale_after": 30.0},
    }
    pools, other = in_force(config, stored, "pools"), in_force(config, stored, "other")
    assert (pools.max_execution_time, pools.stale_after, pools.alert_cooldown) == (20, 30, 5)
    assert (other.max_execution_time, other.stale_after) == (20, 60)
    off = in_force(
        MonitorConfig(min_records_per_second=5), {None: {"min_records_per_second": 0}}, "x"
    )
    assert off.min_records_per_second is None
    whole = in_force(config, {"pools": {"max_consecutive_failures": 4.0}}, "pools")
    assert whole.max_consecutive_failures == 4 and isinstance(whole.max_consecutive_failures, int)


def test_stored_values_are_checked_like_configured_ones() -> None:
    assert check_values({"max_consecutive_failures": 4.0, "stale_after": 90}) == {
        "max_consecutive_failures": 4.0,
        "stale_after": 90.0,
    }
    for bad, message in [
        ({"max_consecutive_failures": 2.5}, "max_consecutive_failures must be a positive integer"),
        ({"min_success_rate": -1}, "min_success_rate must be between 0 and 100"),
        ({"stale_after": None}, "give a value"),
        ({"nope": 1}, "nope is not a threshold"),
    ]:
        with pytest.raises(ConfigError, match=message):
            check_values(bad)
    assert [describe(n, v) for n, v in [("stale_after", 7200), ("max_execution_time", 90)]] == [
        "2.0 h",
        "90 s",
    ]
    assert describe("min_records_per_second", 0) == "off"
    assert describe("min_success_rate", 95) == "95 %"


def test_a_store_backed_monitor_applies_stored_thresholds(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from gecko_otel.store import thresholds as stored
    from support.store_helpers import stored_monitor

    now = datetime.now(timezone.utc)
    with stored_monitor(store_url, watchdog_interval=0.05, store_flush_interval=0.05) as s:
        engine = s.monitor._store._store.engine
        run("pools", fail=True, monitor=s.monitor)
        stored.set_thresholds(engine, "pools", {"max_consecutive_failures": 1}, now=now)
        # A row edited by hand into nonsense is skipped, with one warning.
        stored.set_thresholds(engine, None, {"stale_after": 60}, now=now)
        with engine.begin() as conn:
            conn.execute(
                stored.thresholds.update()
                .values(value=-5.0)
                .where(stored.thresholds.c.name == "stale_after")
            )
        with caplog.at_level(logging.WARNING, logger="gecko_otel"):
            deadline = time.monotonic() + 10
            while not s.monitor.alerts() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # several syncs
        assert [a.rule for a in s.monitor.alerts()] == ["consecutive_failures"]
        assert s.monitor.thresholds("pools").stale_after == 6 * 3600
        warnings = [r.getMessage() for r in caplog.records if "stale_after" in r.getMessage()]
        assert len(warnings) == 1 and "ignoring the stored threshold" in warnings[0]
        assert stored.unset_thresholds(engine, "pools") == 1
        deadline = time.monotonic() + 10
        # The threshold shows before the re-evaluation it prompts has run.
        while s.monitor.thresholds("pools").max_consecutive_failures != 3 or s.monitor.alerts():
            assert time.monotonic() < deadline, s.monitor.alerts()
            time.sleep(0.05)
        assert s.monitor.alerts() == []  # resolved: 1 failure is under 3
