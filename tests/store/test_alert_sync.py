"""Alerts acknowledged or resolved through the store by another process reach their owner."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from gecko_otel import Alert, AlertState, Notification
from gecko_otel.store.schema import system_alerts
from gecko_otel.testing import FakeClock
from support.runs import run
from support.store_helpers import stored_monitor


def _stored_state(monitor: object, alert_id: str) -> str:
    store = monitor._store  # type: ignore[attr-defined]
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
        a._sync_alerts()
        assert a.alerts()[0].state is AlertState.ACKNOWLEDGED
        clock.advance(120)
        a.evaluate()
        assert a.force_flush()
        assert [n.notification for n in owner.notifications] == [Notification.FIRING]

        # Resolved elsewhere: the owner resolves it and tells its handlers.
        assert b.resolve_alert(alert.id) is True
        a._sync_alerts()
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
