"""Alert values: levels, lifecycle states and the ``Alert`` snapshot handlers receive.

An alert is keyed by (collector type, rule): while a rule's condition holds
for a collector there is one alert, whose lifecycle is
``firing -> acknowledged -> resolved`` (acknowledging is optional). Handlers
receive immutable `Alert` snapshots; the alert engine
(`gecko_otel._alerts.engine`) owns the live state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from gecko_otel._values.health import AlertLevel
from gecko_otel._values.records import iso


class AlertState(str, enum.Enum):
    """Where an alert is in its lifecycle."""

    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    def __str__(self) -> str:
        return self.value


class Notification(str, enum.Enum):
    """Why a handler is being called with an alert."""

    FIRING = "firing"  #: the alert started firing
    REPEAT = "repeat"  #: still firing, unacknowledged, one cooldown later
    ESCALATED = "escalated"  #: its level rose (e.g. warning -> critical)
    RESOLVED = "resolved"  #: it resolved, on its own or by hand

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert as it stands at a moment (handlers get one per notification).

    Keeps the GeckoTerminal collector's fields (``id``, ``level``,
    ``collector_type``, ``message``, ``timestamp``, ``metadata``,
    ``acknowledged``, ``resolved``) and adds the rule, lifecycle state and
    times, suppression and the reason for the notification.

    Attributes:
        id: Stable unique id (32 hex digits), the same for every snapshot.
        level: Current severity.
        collector_type: The collector the alert is about.
        rule: The health rule that fired (``consecutive_failures``,
            ``low_success_rate``, ``slow_execution``, ``low_throughput``,
            ``stale``, ...).
        message: What is wrong, in plain words.
        timestamp: When the alert fired (same as ``fired_at``).
        metadata: The figures that triggered it (JSON-serialisable; read-only:
            every handler gets the same snapshot).
        state: firing, acknowledged or resolved.
        fired_at: When it fired.
        last_notified_at: When handlers were last told about it.
        acknowledged_at: When it was acknowledged, if it was.
        resolved_at: When it resolved, if it did.
        suppressed: Whether a suppression currently silences it.
        inhibited: Whether a critical alert of the same collector currently
            silences it.
        notification: Why this snapshot was sent to handlers (``None`` for
            snapshots returned by queries).
        notifications: How many times handlers have been told about it.
    """

    id: str
    level: AlertLevel
    collector_type: str
    rule: str
    message: str
    timestamp: datetime
    metadata: Mapping[str, Any] = field(default_factory=dict)
    state: AlertState = AlertState.FIRING
    fired_at: datetime | None = None
    last_notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    suppressed: bool = False
    inhibited: bool = False
    notification: Notification | None = None
    notifications: int = 0

    def __post_init__(self) -> None:
        # Every handler gets the same snapshot: it must not see another's changes.
        object.__setattr__(self, "metadata", _read_only(self.metadata))

    @property
    def acknowledged(self) -> bool:
        """True once acknowledged (stays true after it resolves)."""
        return self.acknowledged_at is not None

    @property
    def resolved(self) -> bool:
        """True once resolved."""
        return self.state is AlertState.RESOLVED

    @property
    def active(self) -> bool:
        """True while firing or acknowledged."""
        return self.state is not AlertState.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data: the documented webhook payload schema."""
        return {
            "id": self.id,
            "level": self.level.value,
            "collector_type": self.collector_type,
            "rule": self.rule,
            "message": self.message,
            "timestamp": iso(self.timestamp),
            "metadata": _plain(self.metadata),
            "state": self.state.value,
            "acknowledged": self.acknowledged,
            "resolved": self.resolved,
            "fired_at": iso(self.fired_at),
            "last_notified_at": iso(self.last_notified_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "resolved_at": iso(self.resolved_at),
            "suppressed": self.suppressed,
            "inhibited": self.inhibited,
            "notification": self.notification.value if self.notification else None,
            "notifications": self.notifications,
        }


def newest_first(local: list[Alert], stored: Iterable[Alert]) -> list[Alert]:
    """This process's alerts and the stored ones it does not hold, newest first."""
    mine = {alert.id for alert in local}
    merged = local + [alert for alert in stored if alert.id not in mine]
    merged.sort(key=lambda a: a.timestamp, reverse=True)
    return merged


def _read_only(value: Any) -> Any:
    """``value`` with every mapping made read-only and every list a tuple, recursively."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _read_only(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_read_only(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """The JSON-ready copy of a read-only value (dicts and lists again)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
