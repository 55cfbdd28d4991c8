"""Guarantee: a handler calling back into the Monitor never holds what collectors wait for.

Collectors wait for the run pipeline's lock (a run that matters is counted
under it) and, inside it, the alert engine's. A handler that acknowledged or
resolved alerts, or ran a collection, from inside used to hold the engine's
lock while the dispatcher woke every handler lane and the store built the
alert's row, so a collector with an alert, and every collector queued
behind it for the pipeline's lock, waited for that (p99 from about 0.35 ms
to 4-5 ms). Now decisions are made under the locks and handed on after
they are released, in order; and acknowledging or resolving an alert this
process already handled goes no further (it used to flush the store and
write to the database from the handler).

The measured latency is in ``benchmarks/handler_callbacks.py`` (the ratio of
collectors' p99 with a callback-heavy handler to a quiet one).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import Alert, MonitorConfig, Notification
from gecko_otel._alerts.dispatcher import AlertDispatcher
from gecko_otel.store import MemoryStore
from gecko_otel.store.sql import SQLStore
from gecko_otel.testing import FakeClock, capture_runs


class WatchedLock:
    """A re-entrant lock that knows whether the current thread holds it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._depth = threading.local()

    def held(self) -> bool:
        return getattr(self._depth, "n", 0) > 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._depth.n = getattr(self._depth, "n", 0) + 1
        return got

    def release(self) -> None:
        self._depth.n -= 1
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockWatch:
    """Records every hand-off made while the calling thread held a watched lock."""

    def __init__(self) -> None:
        self.locks: list[WatchedLock] = []
        self.under_lock: list[tuple[str, str, str]] = []  # (what, lock, thread)
        self.handed_on: dict[str, int] = {}

    def watch(self, monitor: gecko_otel.Monitor) -> None:
        pipeline = monitor._pipeline
        pipeline.lock = WatchedLock("pipeline")
        pipeline.engine._lock = WatchedLock("alert engine")
        self.locks += [pipeline.lock, pipeline.engine._lock]

    def saw(self, what: str) -> None:
        self.handed_on[what] = self.handed_on.get(what, 0) + 1
        thread = threading.current_thread().name
        self.under_lock += [(what, lock.name, thread) for lock in self.locks if lock.held()]


@pytest.fixture
def lock_watch(monkeypatch: pytest.MonkeyPatch) -> LockWatch:
    watch = LockWatch()
    submit, changed = AlertDispatcher.submit, MemoryStore.alert_changed

    def watched_submit(self: AlertDispatcher, alert: Alert) -> None:
        watch.saw("notification to the dispatcher")
        submit(self, alert)

    def watched_changed(self: MemoryStore, alert: Alert, *args: Any) -> None:
        watch.saw("alert change to the store")
        changed(self, alert, *args)

    monkeypatch.setattr(AlertDispatcher, "submit", watched_submit)
    monkeypatch.setattr(MemoryStore, "alert_changed", watched_changed)
    return watch


def run(monitor: gecko_otel.Monitor, collector: str, *, fail: bool = False) -> None:
    try:
        with gecko_otel.track_collection(collector, monitor=monitor):
            if fail:
                raise RuntimeError("down")
    except RuntimeError:
        pass


def test_a_handlers_callbacks_hand_nothing_on_under_the_collectors_locks(
    lock_watch: LockWatch,
) -> None:
    config = MonitorConfig(max_consecutive_failures=1, recovery_threshold=1)
    with capture_runs(config=config, clock=FakeClock(), watchdog=False) as captured:
        monitor = captured.monitor
        lock_watch.watch(monitor)
        called_back = threading.Event()
        callbacks = []

        def calls_back(alert: Alert) -> None:
            # What the handler did: acknowledge, resolve, run a collection.
            callbacks.append((monitor.acknowledge_alert(alert.id), monitor.resolve_alert(alert.id)))
            run(monitor, "from_handler")
            called_back.set()

        monitor.add_alert_handler(calls_back)
        stop = threading.Event()

        def collector(name: str) -> None:
            while not stop.wait(0.0005):
                run(monitor, name)

        threads = [threading.Thread(target=collector, args=(f"healthy_{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(60):  # each failure fires an alert the handler resolves
                run(monitor, "failing", fail=True)
                assert called_back.wait(5)
                called_back.clear()
                monitor.evaluate()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert monitor.force_flush()

    assert (True, True) in callbacks  # it did acknowledge and resolve live alerts
    assert lock_watch.handed_on["notification to the dispatcher"] >= 120
    assert lock_watch.handed_on["alert change to the store"] >= 120
    assert lock_watch.under_lock == []


def test_handling_an_alert_this_process_already_handled_does_no_store_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(SQLStore, "_synced", lambda self: synced.append("sync") or True)
    answers: list[tuple[bool, bool]] = []
    done = threading.Event()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    meter_provider = MeterProvider(shutdown_on_exit=False)
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        owned_providers=[tracer_provider, meter_provider],
        config=MonitorConfig(max_consecutive_failures=1),
        clock=FakeClock(),
        watchdog=False,
        database=f"sqlite:///{tmp_path / 'alerts.db'}",
    )
    try:

        def handler(alert: Alert) -> None:
            if alert.notification is Notification.RESOLVED:
                # Already resolved here: the answer is False without asking the store.
                answers.append(
                    (monitor.acknowledge_alert(alert.id), monitor.resolve_alert(alert.id))
                )
                done.set()
            else:
                monitor.resolve_alert(alert.id)

        monitor.add_alert_handler(handler)
        synced.clear()
        run(monitor, "failing", fail=True)
        assert done.wait(5)
        assert answers == [(False, False)]
        assert synced == []
    finally:
        monitor.shutdown()
