"""The GeckoTerminal collector's ``CollectionScheduler`` monitoring methods, on a Monitor.

Users migrating from the GeckoTerminal collector call these methods on their
scheduler today. ``SchedulerMonitoring`` offers the same method names and
arguments as thin delegations to the Monitor API (the returned dicts keep
most old keys; docs/migration.md lists every difference), so the calling
code keeps working while the scheduler itself is instrumented by gecko-otel::

    from gecko_otel.compat import SchedulerMonitoring

    monitoring = SchedulerMonitoring(gecko_otel.setup())
    monitoring.get_execution_history(collector_type="pool_collector", limit=10)

See docs/migration.md for the mapping and what changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from gecko_otel._monitor import Monitor


class SchedulerMonitoring:
    """``CollectionScheduler``'s monitoring methods, answered by ``monitor``.

    Threading: as the Monitor methods they delegate to (safe from any thread).
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def get_monitoring_status(self) -> dict[str, Any]:
        """System health, per-collector health and active alerts (JSON-ready)."""
        return {
            "system_health": self.monitor.system_health().to_dict(),
            "collectors": {
                name: health.to_dict() for name, health in self.monitor.health().items()
            },
            "active_alerts": [alert.to_dict() for alert in self.monitor.alerts()],
        }

    def get_performance_metrics(
        self, collector_type: str | None = None, time_window: timedelta | None = None
    ) -> dict[str, Any]:
        """Execution statistics for all collectors together and each one (or one).

        Args:
            collector_type: Only this collector.
            time_window: Only runs started within it (still in memory).
        """
        names = [collector_type] if collector_type else self.monitor.collector_types()
        return {
            "overall": self.monitor.statistics(collector_type, window=time_window).to_dict(),
            "collectors": {
                name: self.monitor.statistics(name, window=time_window).to_dict() for name in names
            },
        }

    def get_execution_history(
        self,
        collector_type: str | None = None,
        limit: int | None = None,
        time_window: timedelta | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest first, as dicts (``ExecutionRecord.to_dict()``)."""
        since = datetime.now(timezone.utc) - time_window if time_window is not None else None
        return [
            record.to_dict()
            for record in self.monitor.history(collector_type, limit=limit, since=since)
        ]

    def get_alerts(
        self,
        level: str | None = None,
        collector_type: str | None = None,
        unresolved_only: bool = True,
    ) -> list[dict[str, Any]]:
        """Alerts, newest first, as dicts (``Alert.to_dict()``)."""
        return [
            alert.to_dict()
            for alert in self.monitor.alerts(
                level=level, collector_type=collector_type, active_only=unresolved_only
            )
        ]

    def acknowledge_alert(self, alert_id: str) -> bool:
        """True when the alert was acknowledged; False for an unknown or handled id."""
        return self.monitor.acknowledge_alert(alert_id)

    def resolve_alert(self, alert_id: str) -> bool:
        """True when the alert was resolved; False for an unknown or resolved id."""
        return self.monitor.resolve_alert(alert_id)

    def suppress_alerts(self, collector_type: str, duration_minutes: float = 60) -> None:
        """Silence the collector's alerts for ``duration_minutes``."""
        self.monitor.suppress(collector_type, duration=timedelta(minutes=duration_minutes))

    def cleanup_monitoring_data(self, days_to_keep: float = 30) -> dict[str, int]:
        """Forget runs and resolved alerts older than ``days_to_keep`` days."""
        return self.monitor.cleanup(timedelta(days=days_to_keep))

    def export_monitoring_data(self) -> dict[str, Any]:
        """Everything the Monitor knows (``Monitor.export()``)."""
        return self.monitor.export()
