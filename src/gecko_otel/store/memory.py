"""``MemoryStore``: the default backend, the bounded in-memory history.

Runs reach the history through the run pipeline; this backend only answers
queries from it. Nothing survives a restart and nothing is shared between
processes; there are no stored alerts beyond this process's own. It never
imports SQLAlchemy.
"""

from __future__ import annotations

from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from gecko_otel.store.export import write_export

if TYPE_CHECKING:
    from gecko_otel._history.memory import History
    from gecko_otel._values.alerts import Alert, AlertState
    from gecko_otel._values.health import AlertLevel
    from gecko_otel._values.records import (
        ExecutionRecord,
        ExecutionStatistics,
        ExecutionStatus,
        FinishedRun,
    )
    from gecko_otel.typing import HealthSnapshot, PipelineHandle


class MemoryStore:
    """The storage contract (`RunStore`) over a `History`.

    Args:
        history: The in-memory history the run pipeline fills (bounded per
            collector by ``max_history_per_collector``).
        service_name: The Resource's ``service.name``, written in exports.
        service_instance_id: The Resource's ``service.instance.id``, likewise.

    Threading: safe from any thread; no method blocks on I/O.
    """

    def __init__(
        self,
        history: History,
        *,
        service_name: str | None = None,
        service_instance_id: str | None = None,
    ) -> None:
        self._history = history
        self._service = {"service_name": service_name, "service_instance_id": service_instance_id}

    # -- consumer: the pipeline already keeps runs in the history ---------------

    def start(self, pipeline: PipelineHandle) -> None:
        """Nothing to restore."""

    def add_run(self, run: FinishedRun) -> None:
        """Nothing to do: the pipeline adds the run to the history."""

    def alert_changed(self, alert: Alert, notified_level: AlertLevel) -> None:
        """Nothing to do: the alert engine holds this process's alerts."""

    def health_changed(self, health: HealthSnapshot) -> None:
        """Nothing to do: health is computed on demand."""

    # -- queries ------------------------------------------------------------------

    def history(
        self,
        collector_type: str | None,
        *,
        limit: int | None,
        status: ExecutionStatus | None,
        since: datetime | None,
    ) -> list[ExecutionRecord]:
        """Runs held in memory, newest first."""
        return self._history.records(collector_type, limit=limit, status=status, since=since)

    def statistics(
        self, collector_type: str | None, *, window: float | None
    ) -> ExecutionStatistics:
        """Running aggregates since start, or the held runs within ``window``."""
        return self._history.statistics(collector_type, window=window)

    def collector_types(self) -> list[str]:
        """Collectors with a run held in memory."""
        return self._history.collector_types()

    def by_collector(
        self, limit: int
    ) -> dict[str, tuple[ExecutionStatistics, list[ExecutionRecord]]]:
        """Each collector's running statistics and newest runs held in memory."""
        return {
            name: (
                self._history.statistics(name, window=None),
                self._history.records(name, limit=limit),
            )
            for name in self._history.collector_types()
        }

    def alerts(
        self, *, level: AlertLevel | None, collector_type: str | None, active_only: bool
    ) -> list[Alert]:
        """None: this process's alerts are the alert engine's."""
        return []

    def set_alert_state(self, alert_id: str, state: AlertState, at: datetime) -> bool:
        """False: no other process's alerts are known."""
        return False

    def cleanup(self, runs_before: datetime, alerts_before: datetime) -> dict[str, int]:
        """Forget runs started before ``runs_before`` (alerts are the alert engine's)."""
        return {"execution_history": self._history.cleanup(runs_before)}

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
        """The runs held in memory, oldest first."""
        records = reversed(self._history.records(collector_type, status=status, since=since))
        rows = (
            {**r.to_dict(), **self._service}
            for r in records
            if until is None or r.start_time < until
        )
        return write_export(out, format, rows)

    def export_state(self) -> dict[str, Any]:
        """Nothing beyond what the Monitor exports."""
        return {}

    def counts(self) -> dict[str, int]:
        """Nothing is dropped here (the run pipeline counts evicted collectors)."""
        return {}

    def flush(self, timeout: float | None) -> bool:
        """Always done."""
        return True

    def shutdown(self, timeout: float) -> None:
        """Nothing to release."""
