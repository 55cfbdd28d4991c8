"""Regression tests for races, leaks and edge cases found in review."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

import gecko_otel
from gecko_otel import Alert, MonitorConfig, track_collection
from gecko_otel._alerts.dispatcher import AlertDispatcher
from gecko_otel.testing import FakeClock, capture_runs
from support.forks import wait_child
from support.runs import run


def test_fork_while_a_drain_holds_the_lock_does_not_deadlock_the_child() -> None:
    with capture_runs(watchdog=False) as captured:
        lock = captured.monitor._alerting.lock
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
            while not captured.monitor._alerting.engine.has_active("pools"):
                if time.monotonic() > deadline:
                    os._exit(1)
                time.sleep(0.02)
            os._exit(0)
        assert wait_child(pid) == 0


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


def test_a_tick_never_overwrites_a_run_processed_meanwhile() -> None:
    clock = FakeClock()
    with capture_runs(MonitorConfig(min_runs_for_rate=1000), clock=clock, watchdog=False) as c:
        for _ in range(3):
            run("pools", fail=True)
        evaluator = c.monitor._alerting.evaluator
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


def test_batched_runs_keep_the_time_they_ended() -> None:
    clock = FakeClock()
    with capture_runs(clock=clock, watchdog=False) as captured:
        run("pools")
        ended = clock.now + 10
        clock.advance(10)
        run("pools")  # quiet: waits in the batch
        assert len(captured.monitor._ingest._pending) == 1
        clock.advance(3000)  # processed much later, by this query
        health = captured.monitor.health("pools")["pools"]
        assert health.last_success is not None
        assert health.last_success.timestamp() == pytest.approx(ended)


def test_a_success_that_moves_the_window_is_processed_at_once() -> None:
    clock = FakeClock()
    with capture_runs(clock=clock, watchdog=False) as captured:
        run("pools")
        clock.advance(3600)  # a later bucket
        run("pools")
        assert len(captured.monitor._ingest._pending) == 0


class RaisingProcessor(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("third-party processor bug")


def test_a_raising_span_processor_never_reaches_user_code(
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(RaisingProcessor())  # before ours: ours never sees the end
    monitor = gecko_otel.Monitor(
        tracer_provider=provider, meter_provider=MeterProvider(), watchdog=False
    )
    try:

        @gecko_otel.collection("c", monitor=monitor)
        def collect() -> int:
            return 7

        assert collect() == 7
        assert monitor.active_runs() == []
        assert [where for where, _ in internal_errors] == ["span.end (a span processor raised)"]
    finally:
        monitor.shutdown()
        provider.shutdown()


def test_a_second_monitor_on_the_same_providers_still_reports_metrics() -> None:
    tracer_provider = TracerProvider()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    first = gecko_otel.Monitor(
        tracer_provider=tracer_provider, meter_provider=meter_provider, watchdog=False
    )
    first.shutdown()
    second = gecko_otel.Monitor(
        tracer_provider=tracer_provider, meter_provider=meter_provider, watchdog=False
    )
    try:
        for _ in range(5):
            with track_collection("pools", monitor=second) as r:
                r.add_records(2)
        data = reader.get_metrics_data()
        names = {
            metric.name: metric
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        }
        [point] = names["gecko.collection.records"].data.data_points
        assert point.value == 10
        assert "gecko.collector.health_status" in names
    finally:
        second.shutdown()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def test_notifications_lost_at_shutdown_are_counted() -> None:
    release = threading.Event()
    dispatcher = AlertDispatcher(timeout=30, queue_size=10)
    dispatcher.add(lambda alert: release.wait(5))
    from gecko_otel._alerts.values import AlertLevel

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
    time.sleep(0.1)  # one call in progress, three queued
    dispatcher.shutdown(timeout=0.1)
    release.set()
    assert dispatcher.counts()["dropped_notifications"] == 3


def test_records_metadata_is_read_only_and_not_shared() -> None:
    with capture_runs(watchdog=False) as captured:

        @gecko_otel.collection("c", metadata={"network": "solana"})
        def collect() -> None:
            pass

        collect()
        collect()
        first, second = captured.runs
        with pytest.raises(TypeError):
            first.metadata["network"] = "eth"  # type: ignore[index]
        assert second.metadata["network"] == "solana"


def test_export_includes_a_configured_collectors_first_run() -> None:
    config = MonitorConfig(collectors={"pools": gecko_otel.CollectorThresholds()})
    with capture_runs(config, watchdog=False) as captured:
        run("pools")
        exported = captured.monitor.export()
    assert exported["collectors"]["pools"]["statistics"]["total_executions"] == 1


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


def test_two_monitors_on_one_tracer_provider_count_only_their_own_runs() -> None:
    provider = TracerProvider()
    a = gecko_otel.Monitor(tracer_provider=provider, meter_provider=MeterProvider(), watchdog=False)
    b = gecko_otel.Monitor(tracer_provider=provider, meter_provider=MeterProvider(), watchdog=False)
    try:
        run("for_a", monitor=a)
        run("for_b", monitor=b)
        run("for_b", monitor=b)
        assert [r.collector_type for r in a.history()] == ["for_a"]
        assert [r.collector_type for r in b.history()] == ["for_b", "for_b"]
    finally:
        a.shutdown()
        b.shutdown()
        provider.shutdown()
