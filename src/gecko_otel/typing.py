"""The extension points and internal contracts of gecko-otel, as Protocols.

Anything that has the right shape works: a plain function is an alert
handler. Classes may add a ``close()`` that the Monitor calls on shutdown.

The storage contract (`RunStore`) has two implementations in
`gecko_otel.store`: memory (the default) and SQL (SQLite, PostgreSQL).
The Monitor holds one and never asks which. A store is a consumer of the run
pipeline like any other: it is handed finished runs, alert changes and health
snapshots, and reaches the pipeline only through `PipelineHandle`,
which it is given once, by `RunStore.start`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gecko_otel._values.alerts import Alert, AlertState
    from gecko_otel._values.health import AlertLevel, BaselineState, CollectorHealth
    from gecko_otel._values.records import (
        ExecutionRecord,
        ExecutionStatistics,
        ExecutionStatus,
        FinishedRun,
    )

__all__ = [
    "AlertHandler",
    "ClosableAlertHandler",
    "HealthSnapshot",
    "IngestTarget",
    "MetricReadings",
    "MonitorHandle",
    "PipelineHandle",
    "RunConsumer",
    "RunStore",
]

#: Health per collector type: (status value, health score or None).
HealthSnapshot = Mapping[str, tuple[str, float | None]]


@runtime_checkable
class AlertHandler(Protocol):
    """Receives alert notifications.

    Threading contract: called on a dispatcher thread of its own, never on a
    collector's thread, one notification at a time and in order. It may block
    on I/O; a call that takes longer than ``MonitorConfig.handler_timeout``
    is abandoned (left running on its thread) and a fresh thread carries on
    with the next notification, so only then can two calls overlap: a
    handler whose calls may hang should be thread-safe. Exceptions are
    logged and counted, never propagated. An ``async def`` handler is
    awaited there, in an event loop of its own (``asyncio.run``). The alert
    is read-only (its ``metadata`` too): every handler gets the same one.
    """

    def __call__(self, alert: Alert, /) -> object: ...


@runtime_checkable
class ClosableAlertHandler(AlertHandler, Protocol):
    """An alert handler with resources to release when the Monitor shuts down."""

    def close(self) -> None: ...


class RunConsumer(Protocol):
    """What the run pipeline hands on: finished runs, alert changes, health.

    Threading contract: every method is called synchronously on the thread
    that produced the event (a collector's thread for runs, the thread
    holding the pipeline lock for alert changes and health), so each must be
    O(1), never block on I/O and never raise.
    """

    def add_run(self, run: FinishedRun) -> None:
        """A run finished (or was recorded as missed or skipped)."""

    def alert_changed(self, alert: Alert, notified_level: AlertLevel) -> None:
        """An alert was created or changed; ``notified_level`` is what handlers last heard."""

    def health_changed(self, health: HealthSnapshot) -> None:
        """Collectors whose health status or score changed since the last snapshot."""


class PipelineHandle(Protocol):
    """What a store may ask of the run pipeline: restore state, apply alert actions."""

    lock: threading.RLock

    def now(self) -> float:
        """The pipeline's clock (unix seconds)."""

    def drain(self) -> None:
        """Process the runs waiting in the pipeline (before a flush or a read)."""

    def restore_collector(
        self,
        collector_type: str,
        *,
        now: float,
        buckets: Iterable[tuple[int, int, int, float, int, int]],
        first_seen: float | None,
        last_success: float | None,
        last_failure: float | None,
        consecutive_failures: int,
        total_executions: int,
        runs: Sequence[FinishedRun],
    ) -> bool:
        """Rebuild one collector's health state and recent history; False if refused."""

    def restore_alerts(
        self, alerts: Iterable[tuple[Alert, AlertLevel | None]]
    ) -> tuple[int, list[str]]:
        """Take back active alerts; how many, and the ids the newest replaced."""

    def active_alerts(self) -> list[Alert]:
        """This process's active alerts."""

    def acknowledge(self, alert_id: str) -> bool:
        """Acknowledge one of this process's alerts."""

    def resolve(self, alert_id: str) -> bool:
        """Resolve one of this process's alerts."""

    def apply_silences(self, silences: Iterable[tuple[str, str | None, float]]) -> None:
        """Silence as the store says: (collector type, rule or None, until unix time) each."""

    def apply_thresholds(self, stored: Mapping[str | None, Mapping[str, float]]) -> None:
        """Put the store's thresholds in force: collector type (None: every) to values."""

    def baselines(self, written: dict[str, int]) -> dict[str, BaselineState]:
        """Baselines that learned since ``written`` (collector to runs; updated)."""

    def adopt_baselines(self, stored: Mapping[str, BaselineState], *, blend: bool) -> list[str]:
        """Take stored baselines: at start (``blend`` False), or other processes'; the
        collectors whose baseline moved."""


class RunStore(RunConsumer, Protocol):
    """The storage contract: where runs and alert changes are kept and queried.

    Implemented by `gecko_otel.store.MemoryStore` (the default) and
    `gecko_otel.store.SQLStore` (SQLite, PostgreSQL). Arguments reach
    a store already validated by the Monitor.

    Threading contract: the `RunConsumer` methods as documented there;
    queries may block on I/O (never called on a collector's thread by
    gecko-otel) and never raise for an unreachable backend: they answer from
    what the process holds in memory and log the outage.
    """

    def start(self, pipeline: PipelineHandle) -> None:
        """Restore state into ``pipeline`` and start background work. Called once."""

    def history(
        self,
        collector_type: str | None,
        *,
        limit: int | None,
        status: ExecutionStatus | None,
        since: datetime | None,
    ) -> list[ExecutionRecord]:
        """Finished runs, newest first."""

    def statistics(
        self, collector_type: str | None, *, window: float | None
    ) -> ExecutionStatistics:
        """Aggregate figures over the runs (within ``window`` seconds if given)."""

    def collector_types(self) -> list[str]:
        """Collectors with at least one stored run, sorted."""

    def by_collector(
        self, limit: int
    ) -> dict[str, tuple[ExecutionStatistics, list[ExecutionRecord]]]:
        """Every collector's statistics and newest ``limit`` runs (for exports), in a
        few queries however many collectors there are."""

    def alerts(
        self, *, level: AlertLevel | None, collector_type: str | None, active_only: bool
    ) -> list[Alert]:
        """Stored alerts of every process sharing the store (none in memory)."""

    def set_alert_state(self, alert_id: str, state: AlertState, at: datetime) -> bool:
        """Acknowledge or resolve a stored alert of another process; False if unknown."""

    def cleanup(self, runs_before: datetime, alerts_before: datetime) -> dict[str, int]:
        """Delete runs and metric points from before ``runs_before``, and alerts resolved
        before ``alerts_before`` (by the Monitor's clock), including what is still queued;
        counts per table."""

    def export_history(
        self,
        out: IO[str],
        *,
        format: str,
        collector_type: str | None,
        since: datetime | None,
        until: datetime | None,
        status: ExecutionStatus | None,
    ) -> int:
        """Stream runs, oldest first, as JSON lines or CSV; how many were written."""

    def export_state(self) -> dict[str, Any]:
        """Sections the store adds to ``Monitor.export()`` (empty in memory)."""

    def counts(self) -> dict[str, int]:
        """Items dropped, by kind (shown in ``system_health().dropped``)."""

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything handed over so far is stored; False on timeout."""

    def shutdown(self, timeout: float) -> None:
        """Store what is pending (bounded by ``timeout``) and release resources."""


class MetricReadings(Protocol):
    """What the observable instruments read at collection time (from one Monitor).

    Threading contract: called on the metric reader's thread; each call takes
    locks briefly and does no I/O.
    """

    def records_per_collector(self) -> list[tuple[str, int]]:
        """Records collected so far, per collector type."""

    def runs_per_collector(self) -> list[tuple[str, str, int]]:
        """Runs ended so far, as ``(collector type, status, runs)``."""

    def collector_types(self) -> list[str]:
        """Collectors this process has seen finish a run."""

    def active_collector_types(self) -> list[str]:
        """The collector type of each run in progress."""

    def health(self) -> Mapping[str, CollectorHealth]:
        """Health per collector."""

    def active_alerts(self) -> list[tuple[str, str, str]]:
        """``(collector type, rule, level)`` of each active alert."""

    def drop_counts(self) -> Mapping[str, int]:
        """Items dropped or refused, by reason."""


class IngestTarget(Protocol):
    """What the run ingest hands finished runs to (the run pipeline).

    Threading contract: ``now``, ``is_quiet`` and ``keep_watchdog_running``
    are called on the thread that ended the run (O(1), no I/O); ``observe``
    and ``observe_quiet`` under ``lock``, on whichever thread drains, and
    ``send_alerts`` after it.
    """

    lock: threading.RLock

    def now(self) -> float:
        """The pipeline's clock (unix seconds)."""

    def is_quiet(self, run: FinishedRun, ended: float) -> bool:
        """Whether ``run`` may wait in a batch (it cannot fire or resolve an alert)."""

    def observe(self, run: FinishedRun, ended: float) -> None:
        """Count the run in health and update its alerts."""

    def observe_quiet(self, collector_type: str, runs: list[tuple[FinishedRun, float]]) -> None:
        """Count one collector's quiet runs, in order; evaluate its alerts after the last."""

    def keep_watchdog_running(self) -> None:
        """Restart the watchdog if this process lost it (after ``fork()``)."""

    def send_alerts(self) -> None:
        """Hand on the notifications and alert changes decided (after ``lock`` is released)."""


class MonitorHandle(Protocol):
    """What the decorators and the process-wide state use of a Monitor.

    `gecko_otel.Monitor` is the one implementation; the decorators' ``monitor=``
    argument takes it.
    """

    @property
    def instrumentation(self) -> Any:
        """The Monitor's `Instrumentation` (typed loosely: this module sits below capture)."""

    def expect(
        self,
        collector_type: str,
        *,
        every: timedelta | float | None = None,
        cron: str | None = None,
        grace: timedelta | float | None = None,
        max_runtime: timedelta | float | None = None,
        timezone: tzinfo | None = None,
        first_due: datetime | None = None,
    ) -> None:
        """Declare when the collector should run (see `gecko_otel.Monitor.expect`)."""
