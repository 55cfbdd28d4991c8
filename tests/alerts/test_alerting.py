"""The alert lifecycle: fire, repeat, acknowledge, resolve, suppress, escalate, inhibit;
and the dispatcher: handlers that raise or hang never hold up the others or a run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import gecko_otel
from gecko_otel import (
    Alert,
    AlertLevel,
    AlertState,
    CollectorThresholds,
    ConfigError,
    MonitorConfig,
    Notification,
)
from gecko_otel._alerts.dispatcher import AlertDispatcher
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs
from support.forks import wait_child
from support.runs import run, watched


def kinds(captured: CapturedRuns) -> list[tuple[str, str, str]]:
    return [
        (a.notification.value if a.notification else "", a.collector_type, a.rule)
        for a in captured.notifications
    ]


@pytest.fixture
def captured(clock: FakeClock) -> Iterator[CapturedRuns]:
    with watched(clock) as c:
        yield c


def fail_three(collector: str = "pools") -> None:
    for _ in range(3):
        run(collector, fail=True)


def test_fires_once_while_condition_holds(captured: CapturedRuns) -> None:
    fail_three()
    run("pools", fail=True)
    run("pools", fail=True)
    assert kinds(captured) == [("firing", "pools", "consecutive_failures")]
    [alert] = captured.monitor.alerts()
    assert alert.level is AlertLevel.CRITICAL
    assert alert.state is AlertState.FIRING
    assert alert.metadata == {"consecutive_failures": 5, "threshold": 3}
    assert alert.message == "5 consecutive failed runs (threshold 3)"
    assert alert.notifications == 1
    assert not alert.acknowledged and not alert.resolved
    first = captured.notifications[0]
    assert first.id == alert.id
    assert first.metadata == {"consecutive_failures": 3, "threshold": 3}


def test_repeats_after_cooldown_until_acknowledged(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    fail_three()
    clock.advance(minutes=29)
    captured.monitor.evaluate()
    assert len(captured.notifications) == 1
    clock.advance(minutes=1)
    captured.monitor.evaluate()
    assert kinds(captured)[-1] == ("repeat", "pools", "consecutive_failures")
    [alert] = captured.monitor.alerts()
    assert captured.monitor.acknowledge_alert(alert.id) is True
    assert captured.monitor.acknowledge_alert(alert.id) is False  # nothing changed
    assert captured.monitor.acknowledge_alert("no-such-id") is False
    clock.advance(hours=2)
    captured.monitor.evaluate()
    assert len(captured.notifications) == 2
    [acked] = captured.monitor.alerts()
    assert acked.state is AlertState.ACKNOWLEDGED
    assert acked.acknowledged and acked.acknowledged_at is not None


def test_resolves_after_recovery_threshold_good_runs(clock: FakeClock) -> None:
    with watched(clock, recovery_threshold=2) as captured:
        fail_three()
        run("pools")
        assert captured.monitor.alerts()[0].state is AlertState.FIRING  # 1 good run of 2
        run("pools")
        assert captured.monitor.alerts() == []
        assert kinds(captured) == [
            ("firing", "pools", "consecutive_failures"),
            ("resolved", "pools", "consecutive_failures"),
        ]
        [resolved] = captured.monitor.alerts(active_only=False)
        assert resolved.resolved and resolved.resolved_at is not None
        assert resolved.id == captured.notifications[0].id


def test_recovery_threshold_keeps_a_flapping_rule_open() -> None:
    clock = FakeClock()
    config = MonitorConfig(max_execution_time=0.05, recovery_threshold=3, min_runs_for_rate=1000)
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        run("slow", sleep=0.1)  # average over the limit: fires
        for _ in range(3):
            run("slow")  # the average drops under the limit...
            run("slow", sleep=0.2)  # ...and climbs back over it
        kinds = [(a.notification.value, a.rule) for a in captured.notifications if a.notification]
        assert kinds == [("firing", "slow_execution")]
        clock.advance(hours=25)  # the slow runs leave the window
        for _ in range(3):
            run("slow")
        kinds = [(a.notification.value, a.rule) for a in captured.notifications if a.notification]
        assert kinds == [("firing", "slow_execution"), ("resolved", "slow_execution")]


def test_manual_resolve(captured: CapturedRuns) -> None:
    fail_three()
    [alert] = captured.monitor.alerts()
    assert captured.monitor.resolve_alert(alert.id) is True
    assert captured.monitor.resolve_alert(alert.id) is False
    assert captured.monitor.resolve_alert("unknown") is False
    assert kinds(captured)[-1] == ("resolved", "pools", "consecutive_failures")
    run("pools", fail=True)  # still failing: a new alert fires
    [again] = captured.monitor.alerts()
    assert again.id != alert.id


def test_suppression_silences_until_it_expires(captured: CapturedRuns, clock: FakeClock) -> None:
    until = captured.monitor.suppress("pools", duration=timedelta(hours=1))
    assert until.timestamp() == pytest.approx(clock.now + 3600)
    fail_three()
    [alert] = captured.monitor.alerts()
    assert alert.suppressed is True
    assert captured.notifications == []
    fail_three("trades")  # other collectors are not silenced
    assert kinds(captured) == [("firing", "trades", "consecutive_failures")]
    clock.advance(minutes=61)
    captured.monitor.evaluate()
    assert kinds(captured)[1:] == [
        ("firing", "pools", "consecutive_failures"),  # told once the silence ended
        ("repeat", "trades", "consecutive_failures"),  # its cooldown passed meanwhile
    ]
    assert captured.monitor.alerts(collector_type="pools")[0].suppressed is False


def test_suppress_one_rule_and_unsuppress(captured: CapturedRuns, clock: FakeClock) -> None:
    captured.monitor.suppress("pools", duration=600, rule="stale")
    fail_three()
    assert kinds(captured) == [("firing", "pools", "consecutive_failures")]
    captured.monitor.suppress("trades", duration=600)
    fail_three("trades")
    assert captured.monitor.unsuppress("trades") == 1
    assert captured.monitor.unsuppress("trades") == 0
    assert kinds(captured)[-1] == ("firing", "trades", "consecutive_failures")


def test_escalation_notifies_at_once(captured: CapturedRuns, clock: FakeClock) -> None:
    run("pools")
    clock.advance(hours=6)
    captured.monitor.evaluate()
    [stale] = captured.monitor.alerts()
    assert (stale.rule, stale.level) == ("stale", AlertLevel.WARNING)
    assert captured.monitor.acknowledge_alert(stale.id)
    clock.advance(hours=6)
    captured.monitor.evaluate()
    assert kinds(captured) == [("firing", "pools", "stale"), ("escalated", "pools", "stale")]
    [escalated] = captured.monitor.alerts()
    assert escalated.id == stale.id
    assert escalated.level is AlertLevel.CRITICAL
    assert escalated.state is AlertState.FIRING  # back from acknowledged
    run("pools")  # time rules clear as soon as they stop holding
    assert kinds(captured)[-1] == ("resolved", "pools", "stale")


def test_escalation_clears_the_acknowledgement() -> None:
    clock = FakeClock()
    with capture_runs(MonitorConfig(min_runs_for_rate=1000), clock=clock, watchdog=False) as c:
        run("pools")
        clock.advance(hours=6)
        c.monitor.evaluate()
        [alert] = c.monitor.alerts()
        assert c.monitor.acknowledge_alert(alert.id)
        clock.advance(hours=6)
        c.monitor.evaluate()
        [escalated] = c.monitor.alerts()
        assert escalated.acknowledged is False
        assert escalated.acknowledged_at is None


def test_critical_inhibits_lower_alerts_of_the_collector(clock: FakeClock) -> None:
    with watched(clock, min_runs_for_rate=3) as captured:
        fail_three()
        rules = {a.rule: a for a in captured.monitor.alerts()}
        assert set(rules) == {"consecutive_failures", "low_success_rate"}
        assert rules["low_success_rate"].inhibited is True
        assert kinds(captured) == [("firing", "pools", "consecutive_failures")]  # pages once
        captured.monitor.resolve_alert(rules["consecutive_failures"].id)
        # The inhibition ended with it, so the warning is finally told.
        assert kinds(captured)[-2:] == [
            ("resolved", "pools", "consecutive_failures"),
            ("firing", "pools", "low_success_rate"),
        ]


def test_alert_queries_filter_and_sort(captured: CapturedRuns, clock: FakeClock) -> None:
    fail_three("a")
    clock.advance(1)
    fail_three("b")
    alerts = captured.monitor.alerts()
    assert [a.collector_type for a in alerts] == ["b", "a"]
    assert captured.monitor.alerts(collector_type="a")[0].collector_type == "a"
    assert captured.monitor.alerts(level="critical") == alerts
    assert captured.monitor.alerts(level=AlertLevel.WARNING) == []
    with pytest.raises(ConfigError, match="unknown alert level 'severe'"):
        captured.monitor.alerts(level="severe")
    payload = alerts[0].to_dict()
    assert payload["state"] == "firing"
    assert payload["level"] == "critical"


def test_per_collector_cooldown_and_thresholds(clock: FakeClock) -> None:
    overrides = {"pools": CollectorThresholds(max_consecutive_failures=1, alert_cooldown=60)}
    with watched(clock, collectors=overrides) as captured:
        run("pools", fail=True)
        run("trades", fail=True)
        assert kinds(captured) == [("firing", "pools", "consecutive_failures")]
        clock.advance(61)
        captured.monitor.evaluate()
        assert kinds(captured)[-1] == ("repeat", "pools", "consecutive_failures")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"collector_type": "", "duration": 5}, "collector_type must be a non-empty string"),
        ({"collector_type": "pools", "duration": 0}, "duration must be positive"),
        ({"collector_type": "pools", "duration": "1h"}, "duration must be seconds"),
        ({"collector_type": "pools", "duration": 5, "rule": ""}, "rule must be a rule name"),
    ],
)
def test_suppress_argument_errors(captured: CapturedRuns, kwargs: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        captured.monitor.suppress(**kwargs)


def test_handler_argument_errors(captured: CapturedRuns) -> None:
    with pytest.raises(ConfigError, match="must be callable"):
        captured.monitor.add_alert_handler("print")  # type: ignore[arg-type]


# -- the dispatcher -----------------------------------------------------------------


def test_raising_and_hanging_handlers_do_not_hold_up_others(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[str] = []
    release = threading.Event()

    def broken(alert: Alert) -> None:
        raise RuntimeError("handler bug")

    def hanging(alert: Alert) -> None:
        release.wait(10)

    config = MonitorConfig(handler_timeout=0.2, min_runs_for_rate=1000)
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        monitor = captured.monitor
        for handler in (broken, hanging, lambda a: received.append(a.collector_type)):
            monitor.add_alert_handler(handler)
        for name in ("a", "b", "c"):
            fail_three(name)
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert received == ["a", "b", "c"]
        assert monitor.force_flush(5_000)
        dropped = monitor.system_health().dropped
        assert dropped["handler_errors"] == 3
        assert dropped["handler_timeouts"] == 3
        assert any("handler bug" in r.getMessage() for r in caplog.records)
        release.set()


def test_a_slow_handler_never_slows_a_run(clock: FakeClock) -> None:
    def slow(alert: Alert) -> None:
        time.sleep(0.5)

    config = MonitorConfig(max_consecutive_failures=1, min_runs_for_rate=1000, handler_timeout=5)
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        captured.monitor.add_alert_handler(slow)
        start = time.perf_counter()
        for i in range(50):
            run(f"collector_{i}", fail=True)  # 50 alerts fire, each notifies `slow`
        elapsed = time.perf_counter() - start
        assert len(captured.monitor.alerts()) == 50
        assert captured.monitor.remove_alert_handler(slow) is True
        assert captured.monitor.remove_alert_handler(slow) is False
    assert elapsed < 0.5  # 50 notifications x 0.5 s would be 25 s if a run waited


def test_full_handler_queue_drops_and_counts(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    handled: list[Alert] = []

    def blocking(alert: Alert) -> None:
        release.wait(10)
        handled.append(alert)

    config = MonitorConfig(
        max_consecutive_failures=1, min_runs_for_rate=1000, alert_queue_size=2, handler_timeout=30
    )
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        captured.monitor.add_alert_handler(blocking)
        for i in range(10):
            run(f"c{i}", fail=True)
        release.set()
        assert captured.monitor.force_flush(5_000)
        delivered = len(captured.notifications) + len(handled)
        dropped = captured.monitor.system_health().dropped["dropped_notifications"]
        deadline = time.monotonic() + 5
        while not any("dropped" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the drop was never logged"
            time.sleep(0.05)
    # 10 notifications for each of two handlers: every one delivered or counted.
    assert delivered + dropped == 20
    # Logged by the supervisor thread, never on the collector's thread.
    assert any(
        "dropped" in r.getMessage() and r.threadName == "gecko-otel-alert-supervisor"
        for r in caplog.records
    )
    assert len(handled) <= 3  # one in the call, two queued; the rest dropped
    assert dropped >= 7


def test_notifications_lost_at_shutdown_are_counted() -> None:
    release, called = threading.Event(), threading.Event()
    dispatcher = AlertDispatcher(timeout=30, queue_size=10)
    dispatcher.add(lambda alert: (called.set(), release.wait(5)))
    from gecko_otel._values.health import AlertLevel

    alert = Alert(
        id="x",
        level=AlertLevel.WARNING,
        collector_type="c",
        rule="r",
        message="m",
        timestamp=__import__("datetime").datetime.now(__import__("datetime").timezone.utc),
    )
    for _ in range(4):
        dispatcher.submit(alert)
    assert called.wait(5)  # one call in progress, three queued
    dispatcher.shutdown(timeout=0.1)
    release.set()
    assert dispatcher.counts()["dropped_notifications"] == 3


def test_watchdog_thread_evaluates_on_its_own() -> None:
    clock = FakeClock()
    config = MonitorConfig(watchdog_interval=0.05, stale_after=60, min_runs_for_rate=1000)
    with capture_runs(config, clock=clock) as captured:
        run("pools")
        clock.advance(120)
        deadline = time.monotonic() + 5
        while not captured.monitor.alerts() and time.monotonic() < deadline:
            time.sleep(0.02)
        [alert] = captured.monitor.alerts()
        assert alert.rule == "stale"
        assert kinds(captured) == [("firing", "pools", "stale")]


def test_watchdog_thread_restarts_in_a_forked_child() -> None:
    config = MonitorConfig(watchdog_interval=0.05, stale_after=60, min_runs_for_rate=1000)
    clock = FakeClock()
    with capture_runs(config, clock=clock) as captured:
        run("pools")
        pid = os.fork()
        if pid == 0:
            run("pools")  # the child's first run restarts its watchdog
            clock.advance(120)
            deadline = time.monotonic() + 5
            while not captured.monitor._pipeline.engine.has_active("pools"):
                if time.monotonic() > deadline:
                    os._exit(1)
                time.sleep(0.02)
            os._exit(0)
        assert wait_child(pid) == 0


def test_a_tick_never_overwrites_a_run_processed_meanwhile() -> None:
    clock = FakeClock()
    with capture_runs(MonitorConfig(min_runs_for_rate=1000), clock=clock, watchdog=False) as c:
        for _ in range(3):
            run("pools", fail=True)
        evaluator = c.monitor._pipeline.evaluator
        original = evaluator.conditions
        in_tick = threading.Event()

        def slow_conditions(collector_type: str, now: float) -> Any:
            result = original(collector_type, now)  # computed while still failing
            in_tick.set()
            time.sleep(0.2)
            return result

        evaluator.conditions = slow_conditions  # type: ignore[method-assign]
        tick = threading.Thread(target=c.monitor.evaluate)
        tick.start()
        assert in_tick.wait(5)
        run("pools")  # recovers while the tick holds a stale snapshot
        tick.join()
        evaluator.conditions = original  # type: ignore[method-assign]
        assert c.monitor.alerts() == []
        kinds = [a.notification.value for a in c.notifications if a.notification]
        assert kinds == ["firing", "resolved"]


def test_setup_accepts_alert_handlers() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    got: list[Alert] = []
    tp, mp = TracerProvider(), MeterProvider()
    monitor = gecko_otel.setup(
        tracer_provider=tp,
        meter_provider=mp,
        config=MonitorConfig(max_consecutive_failures=1),
        alert_handlers=[got.append],
    )
    try:
        run("pools", fail=True)
        monitor.force_flush()
        assert [(a.rule, a.notification) for a in got] == [
            ("consecutive_failures", Notification.FIRING)
        ]
    finally:
        monitor.shutdown()
        tp.shutdown()
        mp.shutdown()


def test_alerts_still_flow_in_a_forked_child(clock: FakeClock) -> None:
    import os

    with watched(clock) as captured:
        fail_three("before_fork")  # the dispatcher's threads are running now
        assert len(captured.notifications) == 1
        pid = os.fork()
        if pid == 0:  # the child: fresh locks and threads, same Monitor
            try:
                fail_three("in_child")
                ok = kinds(captured)[-1] == ("firing", "in_child", "consecutive_failures")
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [a.collector_type for a in captured.notifications] == ["before_fork"]


def test_fork_while_a_drain_holds_the_lock_does_not_deadlock_the_child() -> None:
    with capture_runs(watchdog=False) as captured:
        lock = captured.monitor._pipeline.lock
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with lock:
                held.set()
                release.wait(5)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: its first failing run drains under that lock
            run("in_child", fail=True)
            os._exit(0)
        release.set()
        holder.join()
        assert wait_child(pid) == 0


def test_drops_are_a_metric_too(clock: FakeClock) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("handler bug")

    with watched(clock, max_collectors=2) as captured:
        captured.monitor.add_alert_handler(broken)
        run("healthy_and_least_recent")
        fail_three("kept")
        run("beyond_max_collectors")
        assert captured.monitor.force_flush(5_000)
        points = {
            attrs["gecko.drop.reason"]: value
            for attrs, value in captured.metrics()["gecko.monitor.dropped"]
        }
    assert points["handler_errors"] == 1
    assert points["evicted_collectors"] == 1
    assert points["dropped_notifications"] == 0


def test_escalation_held_back_by_a_suppression_is_told_when_it_ends(
    captured: CapturedRuns, clock: FakeClock
) -> None:
    run("pools")
    clock.advance(hours=6)
    captured.monitor.evaluate()  # stale, warning: told
    captured.monitor.suppress("pools", duration=timedelta(hours=8))
    clock.advance(hours=6)
    captured.monitor.evaluate()  # escalates to critical while suppressed
    assert kinds(captured) == [("firing", "pools", "stale")]
    captured.monitor.unsuppress("pools")
    assert kinds(captured)[-1] == ("escalated", "pools", "stale")
    assert captured.notifications[-1].level is AlertLevel.CRITICAL


def test_configured_collectors_are_watched_before_they_ever_run(clock: FakeClock) -> None:
    config = MonitorConfig(collectors={"pools": CollectorThresholds(stale_after=600)})
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        assert captured.monitor.health()["pools"].status.value == "unknown"
        clock.advance(601)
        captured.monitor.evaluate()
        [alert] = captured.monitor.alerts()
        assert (alert.collector_type, alert.rule) == ("pools", "stale")
        assert alert.message.startswith("no successful run in the")
