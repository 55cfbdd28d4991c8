"""The persistent store: execution history, alerts, collector metadata and metric points.

Configure it with ``setup(database_url=...)`` (or ``MonitorConfig.database_url``,
``GECKO_OTEL_DATABASE_URL``): ``sqlite:///path.db`` for one machine,
``postgresql+psycopg://...`` for a fleet. The Monitor migrates the schema on
start, rebuilds health and active alerts from it, writes in the background
and answers ``history()``, ``statistics()`` and ``alerts()`` from it.

Modules: :mod:`~gecko_otel.store.schema` (tables), :mod:`~gecko_otel.store.engine`
(engines, migrations), :mod:`~gecko_otel.store.store` (reads and writes),
:mod:`~gecko_otel.store.writer` (the background writer),
:mod:`~gecko_otel.store.metrics` (the metric exporter).
"""

from __future__ import annotations

from gecko_otel.store.engine import (
    check_url,
    create_store_engine,
    current_revision,
    migrate,
    parse_url,
)
from gecko_otel.store.metrics import StoreMetricExporter, store_metric_reader
from gecko_otel.store.schema import HEAD_REVISION
from gecko_otel.store.store import CollectorRow, Store
from gecko_otel.store.writer import StoreWriter

__all__ = [
    "HEAD_REVISION",
    "CollectorRow",
    "Store",
    "StoreMetricExporter",
    "StoreWriter",
    "check_url",
    "create_store_engine",
    "current_revision",
    "migrate",
    "parse_url",
    "store_metric_reader",
]
