"""gecko-otel: OpenTelemetry monitoring for scheduled data collectors.

Decorate a collector and every run becomes an OpenTelemetry span and metrics,
lands in execution history, and can be queried::

    import gecko_otel

    monitor = gecko_otel.setup(service_name="gecko-collector")

    @gecko_otel.collection("pool_collector", metadata={"network": "solana"})
    async def collect_pools() -> int: ...

    monitor.statistics("pool_collector").success_rate
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# What the first @collection call needs is imported now; the rest (the
# Monitor and its pipeline, setup()) when first used, so `import gecko_otel`
# stays close to the cost of the OpenTelemetry SDK itself.
from gecko_otel._capture.decorators import collection, track_collection
from gecko_otel._capture.run import Run, current_run
from gecko_otel._config import CollectorThresholds, MonitorConfig
from gecko_otel._guard import internal_error_count
from gecko_otel._lazy import lazy_names
from gecko_otel._values.records import ExecutionRecord, ExecutionStatistics, ExecutionStatus
from gecko_otel._version import __version__
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from gecko_otel._monitor import Monitor
    from gecko_otel._setup import get_monitor, setup
    from gecko_otel._values.alerts import Alert, AlertState, Notification
    from gecko_otel._values.health import (
        AlertLevel,
        CollectionStatus,
        CollectorHealth,
        SystemHealth,
        Usual,
    )
    from gecko_otel.typing import AlertHandler

#: Public names imported on first use, and the module each comes from.
_LAZY: dict[str, str] = {
    "Monitor": "gecko_otel._monitor",
    "get_monitor": "gecko_otel._setup",
    "setup": "gecko_otel._setup",
    "Alert": "gecko_otel._values.alerts",
    "AlertState": "gecko_otel._values.alerts",
    "Notification": "gecko_otel._values.alerts",
    "AlertLevel": "gecko_otel._values.health",
    "CollectionStatus": "gecko_otel._values.health",
    "CollectorHealth": "gecko_otel._values.health",
    "SystemHealth": "gecko_otel._values.health",
    "Usual": "gecko_otel._values.health",
    "AlertHandler": "gecko_otel.typing",
}


if not TYPE_CHECKING:  # type checkers see the imports above, so a typo stays an error
    __getattr__, __dir__ = lazy_names(__name__, _LAZY, globals(), globals())


__all__ = [
    "Alert",
    "AlertHandler",
    "AlertLevel",
    "AlertState",
    "CollectionStatus",
    "CollectorHealth",
    "CollectorThresholds",
    "ConfigError",
    "ExecutionRecord",
    "ExecutionStatistics",
    "ExecutionStatus",
    "Monitor",
    "MonitorConfig",
    "Notification",
    "Run",
    "SystemHealth",
    "Usual",
    "__version__",
    "collection",
    "current_run",
    "get_monitor",
    "internal_error_count",
    "setup",
    "track_collection",
]
