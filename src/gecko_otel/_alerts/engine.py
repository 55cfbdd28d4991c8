"""The alert engine: one alert per (collector, rule), its lifecycle and notifications.

Fed with the conditions that hold for a collector (after every run, and on
every watchdog tick for the time-based rules), the engine keeps at most one
active alert per (collector type, rule) and decides when handlers hear about
it:

* **firing**: once, when the condition first holds;
* **repeat**: every ``alert_cooldown`` while it still fires and nobody
  acknowledged it;
* **escalated**: at once when its level rises (an acknowledged alert returns
  to firing);
* **resolved**: once, when the condition has cleared and the collector has
  had ``recovery_threshold`` good runs in a row (time-based rules: as soon as
  they clear), or when someone resolves it by hand.

Silencing never loses an alert, only its notifications: a *suppression*
(by collector, optionally by rule, until a time) and *inhibition* (a
collector's lower-level alerts stay quiet while one of its critical alerts is
active, as Alertmanager inhibits) both hold notifications back; an alert that
has never been notified is notified as firing once the silence ends. A
resolution is always notified to handlers that heard of the alert, so
stateful receivers (Alertmanager) never keep a dead alert alive.

Threading: every method takes the engine's lock, briefly; notifications and
changes are only queued under it, in order, and `AlertEngine.send` hands
them on after the caller released its locks (see `gecko_otel._alerts.outbox`).
The per-run entry point returns at once, without the lock, for a healthy
collector with no active alert.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from gecko_otel._alerts.outbox import Outbox
from gecko_otel._guard import at_fork_in_child
from gecko_otel._health.rules import HealthEvaluator
from gecko_otel._values.alerts import Alert, AlertState, Notification
from gecko_otel._values.health import TIME_RULES, AlertLevel, Condition
from gecko_otel._values.records import new_execution_id, utc_seconds

_MAX_RESOLVED: Final = 1000


def _seconds(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


class _LiveAlert:
    """The engine's mutable record of one alert."""

    __slots__ = (
        "acknowledged_at",
        "clear_runs",
        "collector_type",
        "fired_at",
        "id",
        "last_notified_at",
        "level",
        "message",
        "metadata",
        "notifications",
        "notified_level",
        "resolved_at",
        "rule",
        "state",
    )

    def __init__(self, collector_type: str, condition: Condition, now: float) -> None:
        self.id = new_execution_id()
        self.collector_type = collector_type
        self.rule = condition.rule
        self.level = condition.level
        self.message = condition.message
        self.metadata: Mapping[str, Any] = condition.figures
        self.state = AlertState.FIRING
        self.fired_at = now
        self.last_notified_at: float | None = None
        self.acknowledged_at: float | None = None
        self.resolved_at: float | None = None
        self.notifications = 0
        self.clear_runs = 0  # runs in a row with the condition clear
        self.notified_level = condition.level  # the level handlers last heard

    def snapshot(
        self,
        *,
        suppressed: bool = False,
        inhibited: bool = False,
        notification: Notification | None = None,
    ) -> Alert:
        fired = datetime.fromtimestamp(self.fired_at, timezone.utc)
        return Alert(
            id=self.id,
            level=self.level,
            collector_type=self.collector_type,
            rule=self.rule,
            message=self.message,
            timestamp=fired,
            metadata=dict(self.metadata),
            state=self.state,
            fired_at=fired,
            last_notified_at=utc_seconds(self.last_notified_at),
            acknowledged_at=utc_seconds(self.acknowledged_at),
            resolved_at=utc_seconds(self.resolved_at),
            suppressed=suppressed,
            inhibited=inhibited,
            notification=notification,
            notifications=self.notifications,
        )


@dataclass(frozen=True, slots=True)
class Suppression:
    """Silences the alerts of ``collector_type`` (one ``rule``, or all) until ``until``."""

    collector_type: str
    rule: str | None
    until: float

    def matches(self, alert: _LiveAlert, now: float) -> bool:
        return (
            now < self.until
            and self.collector_type == alert.collector_type
            and (self.rule is None or self.rule == alert.rule)
        )


class AlertEngine:
    """Alerts of every collector.

    Args:
        evaluator: Health state (for thresholds and recovery streaks).
        notify: Called with each notification snapshot; must not block.
        on_change: Called with each alert created or changed and the level
            handlers last heard (the store keeps the lifecycle); must not block.

    Both are called by `send`, in the order the engine decided, never under
    the engine's lock: callers call `send` once they hold no lock.
    """

    def __init__(
        self,
        evaluator: HealthEvaluator,
        notify: Callable[[Alert], None],
        *,
        on_change: Callable[[Alert, AlertLevel], None] | None = None,
    ) -> None:
        self._evaluator = evaluator
        self._outbox = Outbox(notify, on_change)
        self._lock = threading.RLock()
        #: collector type -> rule -> active alert
        self._active: dict[str, dict[str, _LiveAlert]] = {}
        self._by_id: dict[str, _LiveAlert] = {}
        self._resolved: deque[_LiveAlert] = deque(maxlen=_MAX_RESOLVED)
        self._suppressions: list[Suppression] = []
        #: The store's silences, replaced as a whole on each sync (see `set_stored`).
        self._stored: tuple[Suppression, ...] = ()
        at_fork_in_child(self, "_reset_lock")

    def _reset_lock(self) -> None:
        self._lock = threading.RLock()

    def send(self, *, wait: bool = False) -> None:
        """Hand on the notifications and changes decided so far (no lock may be held)."""
        self._outbox.send(wait=wait)

    # -- feeding --------------------------------------------------------------

    def forget_resolved(self, before: float) -> int:
        """Drop resolved alerts that resolved before unix time ``before``; how many."""
        with self._lock:
            kept = [a for a in self._resolved if (a.resolved_at or 0.0) >= before]
            removed = len(self._resolved) - len(kept)
            for live in self._resolved:
                if (live.resolved_at or 0.0) < before:
                    self._by_id.pop(live.id, None)
            self._resolved.clear()
            self._resolved.extend(kept)
            return removed

    def knows(self, alert_id: str) -> bool:
        """Whether the alert is held here, active or resolved (lock-free read)."""
        return alert_id in self._by_id

    def has_active(self, collector_type: str) -> bool:
        """Whether the collector has an active alert (lock-free read)."""
        return collector_type in self._active

    def update(
        self,
        collector_type: str,
        conditions: list[Condition],
        now: float,
        *,
        by_run: bool,
        retuned: bool = False,
    ) -> None:
        """Apply the conditions that hold for ``collector_type`` at unix time ``now``.

        Args:
            collector_type: The collector.
            conditions: The rules that hold for it now.
            now: Unix time of the evaluation (the run's end for ``by_run``).
            by_run: True when a finished run prompted the evaluation: only
                such runs count towards ``recovery_threshold``.
            retuned: True when its thresholds changed: an alert whose rule
                no longer holds resolves at once, as no run will prove it.
        """
        if not conditions and collector_type not in self._active:
            return  # the common case: healthy, nothing to resolve
        with self._lock:
            active = self._active.setdefault(collector_type, {})
            holding = {c.rule: c for c in conditions}
            recovery = self._evaluator.thresholds(collector_type).recovery_threshold
            for rule, live in list(active.items()):
                if rule in holding:
                    continue
                if rule in TIME_RULES or retuned:
                    self._resolve(live, now)  # clears as soon as it stops holding
                elif by_run:
                    # Run-based rules wait for recovery_threshold runs in a row
                    # with the condition clear, so a flapping one stays open.
                    live.clear_runs += 1
                    if live.clear_runs >= recovery:
                        self._resolve(live, now)
            for condition in conditions:
                current = active.get(condition.rule)
                if current is None:
                    new = _LiveAlert(collector_type, condition, now)
                    active[condition.rule] = new
                    self._by_id[new.id] = new
                    continue  # notified below, once inhibition is known
                live = current
                live.clear_runs = 0
                changed = live.message != condition.message
                live.message = condition.message
                live.metadata = condition.figures
                if condition.level.severity > live.level.severity:
                    live.level = condition.level
                    live.state = AlertState.FIRING
                    live.acknowledged_at = None
                    self._deliver(live, Notification.ESCALATED, now)
                    changed = True
                elif condition.level.severity < live.level.severity:
                    live.level = condition.level  # quietly back down
                    changed = True
                if changed:
                    self._changed(live, now)
            self._flush_unnotified(collector_type, now)
            for live in active.values():
                if live.notifications == 0:  # new, or still held back by a silence
                    self._changed(live, now)
            if not active:
                del self._active[collector_type]

    def tick(self, now: float) -> None:
        """Time-driven work: repeats, expired suppressions, ended inhibitions."""
        with self._lock:
            self._suppressions = [s for s in self._suppressions if s.until > now]
            for collector_type, active in list(self._active.items()):
                self._flush_unnotified(collector_type, now)
                cooldown = self._evaluator.thresholds(collector_type).alert_cooldown
                for live in list(active.values()):
                    if (
                        live.state is AlertState.FIRING
                        and live.last_notified_at is not None
                        and now - live.last_notified_at >= cooldown
                    ):
                        self._deliver(live, Notification.REPEAT, now)

    def restore(self, alerts: Iterable[tuple[Alert, AlertLevel | None]]) -> tuple[int, list[str]]:
        """Take back active alerts from the store after a restart.

        Returns how many were taken back, and the ids of older alerts of
        the same (collector, rule) that the newest one replaced (replicas
        of one service can each have fired it): the caller resolves those.

        They keep their id, level, state, times and notification count, so
        a condition that still holds updates the same alert instead of
        firing a new one, and repeats follow the stored last notification.
        Resolved alerts and (collector, rule) pairs already active are skipped.
        """
        restored = 0
        superseded: list[str] = []
        with self._lock:
            for alert, notified_level in sorted(alerts, key=lambda a: a[0].timestamp):
                if alert.state is AlertState.RESOLVED or alert.id in self._by_id:
                    continue
                live = _LiveAlert.__new__(_LiveAlert)
                live.id = alert.id
                live.collector_type = alert.collector_type
                live.rule = alert.rule
                live.level = alert.level
                live.message = alert.message
                live.metadata = dict(alert.metadata)
                live.state = alert.state
                live.fired_at = (alert.fired_at or alert.timestamp).timestamp()
                live.last_notified_at = _seconds(alert.last_notified_at)
                live.acknowledged_at = _seconds(alert.acknowledged_at)
                live.resolved_at = None
                live.notifications = alert.notifications
                live.clear_runs = 0
                live.notified_level = notified_level or alert.level
                group = self._active.setdefault(alert.collector_type, {})
                previous = group.get(alert.rule)
                if previous is not None:
                    self._by_id.pop(previous.id, None)  # the newer one wins
                    superseded.append(previous.id)
                    restored -= 1
                group[alert.rule] = live
                self._by_id[live.id] = live
                restored += 1
        return restored, superseded

    # -- user actions ------------------------------------------------------------

    def acknowledge(self, alert_id: str, now: float) -> bool:
        """Stop repeats of an active alert; False for unknown or already handled ids."""
        with self._lock:
            live = self._by_id.get(alert_id)
            if live is None or live.state is not AlertState.FIRING:
                return False
            live.state = AlertState.ACKNOWLEDGED
            live.acknowledged_at = now
            self._changed(live, now)
            return True

    def resolve(self, alert_id: str, now: float) -> bool:
        """Resolve an active alert by hand; False for unknown or resolved ids."""
        with self._lock:
            live = self._by_id.get(alert_id)
            if live is None or live.state is AlertState.RESOLVED:
                return False
            self._resolve(live, now)
            active = self._active.get(live.collector_type)
            if active is not None and not active:
                del self._active[live.collector_type]
            self._flush_unnotified(live.collector_type, now)
            return True

    def resolve_collector(self, collector_type: str, now: float) -> None:
        """Resolve every active alert of a collector that is no longer tracked."""
        with self._lock:
            for live in list(self._active.pop(collector_type, {}).values()):
                self._resolve(live, now)

    def suppress(self, collector_type: str, rule: str | None, until: float) -> None:
        """Silence matching alerts until unix time ``until``."""
        with self._lock:
            self._suppressions.append(Suppression(collector_type, rule, until))

    def unsuppress(self, collector_type: str, rule: str | None, now: float) -> int:
        """End matching suppressions now (``rule=None`` ends all of the collector's)."""
        with self._lock:
            kept = [
                s
                for s in self._suppressions
                if not (s.collector_type == collector_type and (rule is None or s.rule == rule))
            ]
            removed = len(self._suppressions) - len(kept)
            self._suppressions = kept
            self._flush_unnotified(collector_type, now)
            return removed

    def set_stored(self, suppressions: Iterable[Suppression], now: float) -> None:
        """Replace the silences read from the store with ``suppressions`` (the active ones).

        They silence like `suppress`; those that are gone (ended or expired)
        stop silencing at once, and what they held back is notified.
        `suppress`/`unsuppress` (this process's own) are kept apart.
        """
        with self._lock:
            previous = self._stored
            self._stored = tuple(suppressions)
            if previous == self._stored:
                return
            for collector_type in {s.collector_type for s in previous}:
                self._flush_unnotified(collector_type, now)

    # -- queries ------------------------------------------------------------------

    def alerts(
        self,
        *,
        level: AlertLevel | None,
        collector_type: str | None,
        active_only: bool,
        now: float,
    ) -> list[Alert]:
        """Alert snapshots, newest first."""
        with self._lock:
            pool: list[_LiveAlert] = [a for group in self._active.values() for a in group.values()]
            if not active_only:
                pool.extend(self._resolved)
            chosen = [
                a
                for a in pool
                if (level is None or a.level is level)
                and (collector_type is None or a.collector_type == collector_type)
            ]
            chosen.sort(key=lambda a: a.fired_at, reverse=True)
            return [
                a.snapshot(suppressed=self._suppressed(a, now), inhibited=self._inhibited(a))
                for a in chosen
            ]

    def active_counts(self) -> dict[str, int]:
        """Active alerts per level (every level present, zero included)."""
        counts = dict.fromkeys((level.value for level in AlertLevel), 0)
        with self._lock:
            for group in self._active.values():
                for live in group.values():
                    counts[live.level.value] += 1
        return counts

    def active_alerts(self) -> list[tuple[str, str, str]]:
        """``(collector_type, rule, level)`` of every active alert."""
        with self._lock:
            return [
                (live.collector_type, live.rule, live.level.value)
                for group in self._active.values()
                for live in group.values()
            ]

    # -- internals (lock held) -----------------------------------------------------

    def _resolve(self, live: _LiveAlert, now: float) -> None:
        live.state = AlertState.RESOLVED
        live.resolved_at = now
        active = self._active.get(live.collector_type)
        if active is not None and active.get(live.rule) is live:
            del active[live.rule]
        if len(self._resolved) == self._resolved.maxlen:
            self._by_id.pop(self._resolved[0].id, None)
        self._resolved.append(live)
        if live.notifications:
            # Always, even when silenced: whoever heard it fire must hear it end.
            self._send(live, Notification.RESOLVED, now)
        else:
            self._changed(live, now)

    def _deliver(self, live: _LiveAlert, kind: Notification, now: float) -> None:
        if self._suppressed(live, now) or self._inhibited(live):
            return
        self._send(live, kind, now)

    def _flush_unnotified(self, collector_type: str, now: float) -> None:
        """Tell handlers what a silence held back: new alerts and escalations."""
        for live in list(self._active.get(collector_type, {}).values()):
            if live.notifications == 0:
                self._deliver(live, Notification.FIRING, now)
            elif live.level.severity > live.notified_level.severity:
                self._deliver(live, Notification.ESCALATED, now)

    def _send(self, live: _LiveAlert, kind: Notification, now: float) -> None:
        live.notifications += 1
        live.last_notified_at = now
        live.notified_level = live.level
        snapshot = live.snapshot(
            suppressed=self._suppressed(live, now),
            inhibited=self._inhibited(live),
            notification=kind,
        )
        self._outbox.put(snapshot, live.notified_level, notify=True)

    def _changed(self, live: _LiveAlert, now: float) -> None:
        snapshot = live.snapshot(
            suppressed=self._suppressed(live, now), inhibited=self._inhibited(live)
        )
        self._outbox.put(snapshot, live.notified_level, notify=False)

    def _suppressed(self, live: _LiveAlert, now: float) -> bool:
        return any(s.matches(live, now) for s in self._suppressions) or any(
            s.matches(live, now) for s in self._stored
        )

    def _inhibited(self, live: _LiveAlert) -> bool:
        if live.level is AlertLevel.CRITICAL or live.state is AlertState.RESOLVED:
            return False
        return any(
            other.level is AlertLevel.CRITICAL
            for other in self._active.get(live.collector_type, {}).values()
        )
