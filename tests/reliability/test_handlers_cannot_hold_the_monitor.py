"""Guarantee: no alert handler can hold up shutdown, leak threads, or wait on itself.

- A hung handler used to make shutdown take 35 s: shutdown shares one deadline.
- An abandoned (hung) call leaked a thread per ``handler_timeout`` with no
  cap: a lane leaves at most ``MAX_HUNG_CALLS`` behind, then its
  notifications queue (bounded, drops counted) until one returns.
- A handler calling ``monitor.force_flush()`` waited on its own call.
"""

from __future__ import annotations

import threading
import time

import gecko_otel
from gecko_otel import Alert, MonitorConfig
from gecko_otel._alerts.dispatcher import MAX_HUNG_CALLS
from gecko_otel.testing import FakeClock, capture_runs


def fail(monitor: gecko_otel.Monitor, collector: str, times: int = 3) -> None:
    for _ in range(times):
        try:
            with gecko_otel.track_collection(collector, monitor=monitor):
                raise RuntimeError("down")
        except RuntimeError:
            pass


def handler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gecko-otel-alert-handler[")]


def test_a_handler_may_flush_the_monitor_without_waiting_on_itself() -> None:
    flushed: list[bool] = []

    with capture_runs(clock=FakeClock(), watchdog=False) as captured:

        def flushing(alert: Alert) -> None:
            flushed.append(captured.monitor.force_flush(timeout_millis=3000))

        captured.monitor.add_alert_handler(flushing)
        fail(captured.monitor, "pools")
        assert captured.monitor.force_flush()
    assert flushed == [True]  # it did not wait for its own call to end


def test_shutdown_keeps_its_deadline_with_a_hung_handler() -> None:
    release = threading.Event()
    config = MonitorConfig(handler_timeout=30, shutdown_timeout=1.0)
    try:
        with capture_runs(config=config, clock=FakeClock(), watchdog=False) as captured:
            captured.monitor.add_alert_handler(lambda alert: release.wait(60))
            fail(captured.monitor, "pools")
            started = time.monotonic()
            captured.monitor.shutdown()
            took = time.monotonic() - started
        assert took < 1.0 + 3.0  # the deadline, and a loaded machine; unbounded is 30 s
    finally:
        release.set()


def test_hung_calls_leave_a_bounded_number_of_threads() -> None:
    release = threading.Event()
    calls: list[str] = []

    def hanging(alert: Alert) -> None:
        calls.append(alert.collector_type)
        release.wait(60)

    config = MonitorConfig(handler_timeout=0.05, alert_queue_size=5, shutdown_timeout=0.5)
    try:
        with capture_runs(config=config, clock=FakeClock(), watchdog=False) as captured:
            captured.monitor.add_alert_handler(hanging)
            for i in range(12):  # 12 alerts, each to a hanging call
                fail(captured.monitor, f"c{i}")
                time.sleep(0.12)  # past handler_timeout: the supervisor abandons it
            alive = [t for t in handler_threads() if "hanging" in t.name]
            assert len(alive) <= MAX_HUNG_CALLS + 1
            assert len(calls) <= MAX_HUNG_CALLS + 1  # the others waited, bounded
            dropped = captured.monitor.system_health().dropped
            assert dropped["handler_timeouts"] >= MAX_HUNG_CALLS
            release.set()  # the hung calls return: the lane carries on with a fresh thread
            deadline = time.monotonic() + 5
            while len(calls) < MAX_HUNG_CALLS + 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(calls) >= MAX_HUNG_CALLS + 2
    finally:
        release.set()
