"""What the status server reads: one small interface, two implementations.

`StatusSource` is all the server asks of its data: liveness, readiness, the
collectors with their health and newest runs, alerts and runs. `MonitorSource`
answers from a running `gecko_otel.Monitor` (``Monitor.serve_http``);
`gecko_otel.serving.StoreSource` answers from a store that monitors write
(``gecko_otel.serving.serve``). The server never asks which one it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gecko_otel._values.alerts import Alert
from gecko_otel._values.health import AlertLevel, CollectionStatus, CollectorHealth
from gecko_otel._values.records import ExecutionRecord, ExecutionStatus


class SourceUnavailable(Exception):
    """The source cannot answer now (the store is unreachable); the server replies 503.

    Its message is shown to clients: it says what is wrong without details
    (no URL, no driver message), which are logged instead.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorView:
    """One collector as the status page shows it.

    Attributes:
        collector_type: The collector.
        status: Its health status (``unknown`` when none was evaluated).
        health_score: 0-100, or None when unknown.
        consecutive_failures: Failed or timed-out runs since the last success.
        total_executions: Runs counted for it.
        last_success: When its last successful (or partial) run ended.
        last_failure: When its last failed or timed-out run ended.
        issues: What is wrong, in plain words.
        recent_runs: Its newest runs, newest first.
    """

    collector_type: str
    status: CollectionStatus
    health_score: float | None
    consecutive_failures: int
    total_executions: int
    last_success: datetime | None
    last_failure: datetime | None
    issues: tuple[str, ...]
    recent_runs: tuple[ExecutionRecord, ...]


class StatusSource(Protocol):
    """The data behind a `StatusServer`.

    Threading: every method is called on the server's connection threads,
    several at once; each must be safe from any thread, must not hold a lock
    a collector needs for longer than a read, and may block on I/O (a
    database query). A method that cannot answer raises `SourceUnavailable`.
    """

    #: ``"monitor"`` or ``"store"``, shown in ``/status``.
    kind: str

    def alive(self) -> bool:
        """Whether the source itself works (False: restarting the process would help)."""

    def readiness(self) -> tuple[bool, str | None]:
        """Whether the source can answer now, and if not, why (one line)."""

    def collectors(self, runs: int) -> list[CollectorView]:
        """Every collector known, by name, each with its ``runs`` newest runs."""

    def alerts(
        self,
        *,
        active_only: bool,
        collector_type: str | None,
        level: AlertLevel | None,
        limit: int | None,
    ) -> list[Alert]:
        """Alerts newest first: active ones (or resolved ones too), filtered, at most ``limit``."""

    def runs(self, collector_type: str | None, limit: int) -> list[ExecutionRecord]:
        """Finished runs newest first, of one collector or all, at most ``limit``."""


class MonitorLike(Protocol):
    """What `MonitorSource` uses of a `gecko_otel.Monitor` (its public methods only)."""

    @property
    def is_shutdown(self) -> bool: ...

    def health(self, collector_type: str | None = None) -> dict[str, CollectorHealth]: ...

    def history(
        self,
        collector_type: str | None = None,
        *,
        limit: int | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
    ) -> list[ExecutionRecord]: ...

    def alerts(
        self,
        *,
        level: AlertLevel | str | None = None,
        collector_type: str | None = None,
        active_only: bool = True,
    ) -> list[Alert]: ...


class MonitorSource:
    """A `StatusSource` over a running Monitor, through its public queries.

    Each query is one of the Monitor's own (per-collector locks held for a
    read, no I/O without a database), so serving never delays a collector.

    Args:
        monitor: The Monitor (typically ``self`` of ``Monitor.serve_http``).
    """

    kind = "monitor"

    def __init__(self, monitor: MonitorLike) -> None:
        self._monitor = monitor

    def alive(self) -> bool:
        """False once the Monitor is shut down (it records nothing more)."""
        return not self._monitor.is_shutdown

    def readiness(self) -> tuple[bool, str | None]:
        """Ready while the Monitor runs."""
        if self._monitor.is_shutdown:
            return False, "the monitor is shut down"
        return True, None

    def collectors(self, runs: int) -> list[CollectorView]:
        """The Monitor's health of every collector, with its newest runs."""
        views = []
        for name, health in sorted(self._monitor.health().items()):
            views.append(
                CollectorView(
                    collector_type=name,
                    status=health.status,
                    health_score=health.health_score,
                    consecutive_failures=health.consecutive_failures,
                    total_executions=health.total_executions,
                    last_success=health.last_success,
                    last_failure=health.last_failure,
                    issues=health.issues,
                    recent_runs=tuple(self._monitor.history(name, limit=runs)),
                )
            )
        return views

    def alerts(
        self,
        *,
        active_only: bool,
        collector_type: str | None,
        level: AlertLevel | None,
        limit: int | None,
    ) -> list[Alert]:
        """The Monitor's alerts (with a database, other processes' too)."""
        found = self._monitor.alerts(
            level=level, collector_type=collector_type, active_only=active_only
        )
        return found[:limit] if limit is not None else found

    def runs(self, collector_type: str | None, limit: int) -> list[ExecutionRecord]:
        """The Monitor's history."""
        return self._monitor.history(collector_type, limit=limit)


def issues_from_alerts(alerts: Sequence[Alert]) -> dict[str, tuple[str, ...]]:
    """Each collector's active alert messages, most severe first (a store keeps no issues)."""
    by_collector: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_collector.setdefault(alert.collector_type, []).append(alert)
    return {
        name: tuple(a.message for a in sorted(found, key=lambda a: -a.level.severity))
        for name, found in by_collector.items()
    }
