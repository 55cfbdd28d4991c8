"""Alerts acknowledged or resolved through the store by another process reach their owner."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import gecko_otel.store.engine
from gecko_otel import Alert, AlertLevel, AlertState, Notification
from gecko_otel.store.schema import system_alerts
from gecko_otel.store.writer import METRIC
from gecko_otel.testing import FakeClock
from support.runs import run
from support.store_helpers import metric_point, stored_monitor


def _stored_state(monitor: object, alert_id: str) -> str:
    store = monitor._store.store  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        return str(
            conn.execute(
                select(system_alerts.c.state).where(system_alerts.c.id == alert_id)
            ).scalar_one()
        )


def _fire(monitor: Any) -> Alert:
    """Three failed runs: the owner's consecutive_failures alert, stored."""
    for _ in range(3):
        run("pools", fail=True, monitor=monitor)
    assert monitor.force_flush()
    [alert] = monitor.alerts()
    return alert


def test_acknowledge_and_resolve_from_another_process(store_url: str) -> None:
    clock = FakeClock()
    with (
        stored_monitor(store_url, service_name="owner", clock=clock, alert_cooldown=60) as owner,
        stored_monitor(store_url, service_name="operator", instance="instance-b") as other,
    ):
        a, b = owner.monitor, other.monitor
        alert = _fire(a)
        assert [n.notification for n in owner.notifications] == [Notification.FIRING]

        # The operator's Monitor does not own it: the row is acknowledged.
        assert b.acknowledge_alert(alert.id) is True
        assert _stored_state(a, alert.id) == "acknowledged"
        # The owner's next snapshot (another failure changes the message)
        # does not undo it...
        run("pools", fail=True, monitor=a)
        assert a.force_flush()
        assert _stored_state(a, alert.id) == "acknowledged"
        # ...and the owner takes it over: no repeat after the cooldown.
        a._store._sync_alerts()
        assert a.alerts()[0].state is AlertState.ACKNOWLEDGED
        clock.advance(120)
        a.evaluate()
        assert a.force_flush()
        assert [n.notification for n in owner.notifications] == [Notification.FIRING]

        # Resolved elsewhere: the owner resolves it and tells its handlers.
        assert b.resolve_alert(alert.id) is True
        a._store._sync_alerts()
        assert a.force_flush()
        assert a.alerts() == []
        assert [n.notification for n in owner.notifications] == [
            Notification.FIRING,
            Notification.RESOLVED,
        ]
        assert _stored_state(a, alert.id) == "resolved"


def test_a_resolved_row_is_never_reopened_by_the_owner(store_url: str) -> None:
    with (
        stored_monitor(store_url, service_name="owner") as owner,
        stored_monitor(store_url, service_name="operator", instance="instance-b") as other,
    ):
        a, b = owner.monitor, other.monitor
        alert = _fire(a)
        assert b.resolve_alert(alert.id) is True
        # Before the owner syncs, its snapshots keep coming: the row stays resolved.
        run("pools", fail=True, monitor=a)
        assert a.force_flush()
        assert _stored_state(a, alert.id) == "resolved"


def test_the_writer_syncs_on_its_own(store_url: str) -> None:
    with (
        stored_monitor(store_url, service_name="owner", watchdog_interval=0.1) as owner,
        stored_monitor(store_url, service_name="operator", instance="instance-b") as other,
    ):
        a, b = owner.monitor, other.monitor
        alert = _fire(a)
        assert b.acknowledge_alert(alert.id) is True
        deadline = time.monotonic() + 10
        while a.alerts()[0].state is not AlertState.ACKNOWLEDGED:
            assert time.monotonic() < deadline, "the owner never picked up the acknowledgement"
            time.sleep(0.05)


def test_alert_sync_does_not_reacknowledge_an_escalation_still_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer runs the alert sync after writing the full batches it woke for; the
    escalation's snapshot can still be queued then, and the stored row still says
    "acknowledged" (the acknowledgement made before the escalation)."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.2)
    path = tmp_path / "sync.db"
    clock = FakeClock()
    settings: dict[str, Any] = {
        "store_batch_size": 3,
        "store_flush_interval": 3600,
        "watchdog_interval": 0.01,  # the sync is due at every pass of the writer
        "stale_after": 3600,
    }
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        with stored_monitor(f"sqlite:///{path}", clock=clock, **settings) as sm:
            m, writer = sm.monitor, sm.monitor._store.writer
            assert writer is not None
            run("pools", monitor=m)
            clock.advance(3600)
            m.evaluate()
            [alert] = m.alerts()
            assert (alert.rule, alert.level) == ("stale", AlertLevel.WARNING)
            assert m.acknowledge_alert(alert.id)
            assert m.force_flush()  # stored: acknowledged

            locker.execute("BEGIN EXCLUSIVE")  # the next batch waits for the database
            now = datetime.now(timezone.utc)
            for i in range(3):  # a full batch (metric points, as the exporter puts them)
                writer.put(METRIC, metric_point(f"p{i}", now))
            deadline = time.monotonic() + 10
            while writer.failures == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            clock.advance(3600)  # twice stale_after: escalates to critical, firing again
            m.evaluate()
            [alert] = m._pipeline.alerts()
            assert (alert.level, alert.state) == (AlertLevel.CRITICAL, AlertState.FIRING)
            locker.execute("COMMIT")
            deadline = time.monotonic() + 10
            while writer.written[METRIC] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.3)  # a few more passes of the writer
            [alert] = m.alerts()
            assert (alert.level, alert.state) == (AlertLevel.CRITICAL, AlertState.FIRING)
    finally:
        locker.close()
