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

from gecko_otel._capture.decorators import collection, track_collection
from gecko_otel._capture.run import Run, current_run
from gecko_otel._config import CollectorThresholds, MonitorConfig
from gecko_otel._guard import internal_error_count
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
from gecko_otel._values.records import ExecutionRecord, ExecutionStatistics, ExecutionStatus
from gecko_otel._version import __version__
from gecko_otel.errors import ConfigError
from gecko_otel.typing import AlertHandler

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
