"""Silences stored in the database: the store API, and Monitors honouring them on sync."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine

from gecko_otel import Notification
from gecko_otel.errors import ConfigError
from gecko_otel.store.engine import migrate
from gecko_otel.store.silences import add_silence, end_silences, get_silence, list_silences
from gecko_otel.testing import FakeClock
from support.runs import run
from support.store_helpers import stored_monitor

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    migrate(engine)
    return engine


def test_add_list_and_end_silences(migrated: Engine) -> None:
    engine = migrated
    pools = add_silence(engine, "pools", length=2 * HOUR, now=T0, comment="upstream down")
    trades = add_silence(
        engine, "trades", length=HOUR, now=T0, rule="consecutive_failures", created_by="ops@h"
    )
    assert pools.ends_at == T0 + 2 * HOUR
    assert get_silence(engine, pools.id) == pools  # what is read back is what was written
    assert [s.id for s in list_silences(engine, T0)] == [trades.id, pools.id]  # newest first

    # Expired ones are not active, but --all lists them.
    later = T0 + 90 * timedelta(minutes=1)
    assert [s.id for s in list_silences(engine, later)] == [pools.id]
    assert [s.id for s in list_silences(engine, later, include_inactive=True)] == [
        trades.id,
        pools.id,
    ]

    # Ended by id: no longer active, kept for --all, ended once only.
    [ended] = end_silences(engine, T0, silence_id=pools.id)
    assert ended.ended_at == T0
    assert list_silences(engine, T0) == [trades]
    assert end_silences(engine, T0, silence_id=pools.id) == []
    assert get_silence(engine, pools.id) == ended
    assert get_silence(engine, 10**6) is None


def test_end_by_collector_and_rule(migrated: Engine) -> None:
    engine = migrated
    every = add_silence(engine, "pools", length=HOUR, now=T0)
    one = add_silence(engine, "pools", length=HOUR, now=T0, rule="stale")
    other = add_silence(engine, "trades", length=HOUR, now=T0)
    assert [s.id for s in end_silences(engine, T0, collector_type="pools", rule="stale")] == [
        one.id
    ]
    assert [s.id for s in end_silences(engine, T0, collector_type="pools")] == [every.id]
    assert list_silences(engine, T0) == [other]


@pytest.mark.parametrize(
    ("collector", "length", "rule"),
    [("", HOUR, None), ("a\x00b", HOUR, None), ("pools", timedelta(0), None), ("pools", HOUR, " ")],
)
def test_invalid_silences_are_refused(
    migrated: Engine, collector: str, length: timedelta, rule: str | None
) -> None:
    with pytest.raises(ConfigError):
        add_silence(migrated, collector, length=length, now=T0, rule=rule)
    assert list_silences(migrated, T0, include_inactive=True) == []


def _heard(stored: Any) -> list[tuple[str, Notification | None]]:
    return [(n.collector_type, n.notification) for n in stored.notifications]


def test_a_monitor_honours_stored_silences_on_its_sync(store_url: str) -> None:
    clock = FakeClock()
    with stored_monitor(store_url, clock=clock, alert_cooldown=60) as stored:
        monitor = stored.monitor
        engine = monitor._store.store.engine
        now = datetime.fromtimestamp(clock.now, timezone.utc)
        silence = add_silence(engine, "pools", length=HOUR, now=now)
        monitor._store._sync_alerts()

        for _ in range(3):
            run("pools", fail=True, monitor=monitor)
            run("trades", fail=True, monitor=monitor)
        assert monitor.force_flush()
        # Both fire and are listed; only the unsilenced one is notified.
        silenced = {a.collector_type: a.suppressed for a in monitor.alerts()}
        assert silenced == {"pools": True, "trades": False}
        assert _heard(stored) == [("trades", Notification.FIRING)]

        # Ended in the database: the next sync lets the held-back alert through.
        end_silences(engine, now, silence_id=silence.id)
        monitor._store._sync_alerts()
        assert monitor.force_flush()
        assert _heard(stored) == [("trades", Notification.FIRING), ("pools", Notification.FIRING)]
        assert not any(a.suppressed for a in monitor.alerts())


def test_a_stored_silence_for_one_rule_and_its_expiry(store_url: str) -> None:
    clock = FakeClock()
    with stored_monitor(store_url, clock=clock, alert_cooldown=3600) as stored:
        monitor = stored.monitor
        engine = monitor._store.store.engine
        now = datetime.fromtimestamp(clock.now, timezone.utc)
        add_silence(engine, "pools", length=timedelta(minutes=5), now=now, rule="stale")
        monitor._store._sync_alerts()
        for _ in range(3):
            run("pools", fail=True, monitor=monitor)
        assert monitor.force_flush()
        # Another rule's silence does not hold consecutive_failures back.
        assert _heard(stored) == [("pools", Notification.FIRING)]

        stored.notifications.clear()
        add_silence(engine, "trades", length=timedelta(minutes=5), now=now)
        monitor._store._sync_alerts()
        for _ in range(3):
            run("trades", fail=True, monitor=monitor)
        assert monitor.force_flush()
        assert _heard(stored) == []
        # Expired: the watchdog's next evaluation notifies it, no unsilence needed.
        clock.advance(minutes=6)
        monitor.evaluate()
        assert monitor.force_flush()
        assert _heard(stored) == [("trades", Notification.FIRING)]


def test_stored_silences_survive_a_restart(store_url: str) -> None:
    clock = FakeClock()
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    with stored_monitor(store_url, clock=clock) as first:
        add_silence(first.monitor._store.store.engine, "pools", length=HOUR, now=now)
    # A new Monitor applies them when it starts, before its first sync.
    with stored_monitor(store_url, clock=clock) as second:
        for _ in range(3):
            run("pools", fail=True, monitor=second.monitor)
        assert second.monitor.force_flush()
        assert [a.suppressed for a in second.monitor.alerts()] == [True]
        assert _heard(second) == []


def test_own_suppressions_are_kept_apart_from_stored_silences(store_url: str) -> None:
    clock = FakeClock()
    with stored_monitor(store_url, clock=clock) as stored:
        monitor = stored.monitor
        monitor.suppress("pools", duration=3600)
        monitor._store._sync_alerts()  # no stored silence: the store does not end ours
        for _ in range(3):
            run("pools", fail=True, monitor=monitor)
        assert monitor.force_flush()
        assert _heard(stored) == []
