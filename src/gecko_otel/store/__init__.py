"""Storage: the two backends of the storage contract, and the SQL store's parts.

`MemoryStore` (the default) keeps a bounded history in memory.
`SQLStore` keeps everything in a database: configure it with
``setup(database_url=...)`` (or ``MonitorConfig.database_url``,
``GECKO_OTEL_DATABASE_URL``): ``sqlite:///path.db`` for one machine,
``postgresql+psycopg://...`` for a fleet. It migrates the schema on start,
rebuilds health and active alerts from it, writes in the background and
answers ``history()``, ``statistics()`` and ``alerts()`` from it.

Both implement `gecko_otel.typing.RunStore`. Names of the SQL side
load SQLAlchemy on first use only, so a memory-only process never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gecko_otel._lazy import lazy_names
from gecko_otel.store.memory import MemoryStore

if TYPE_CHECKING:
    from gecko_otel.store.engine import (
        check_url,
        create_store_engine,
        current_revision,
        migrate,
        parse_url,
    )
    from gecko_otel.store.metrics import StoreMetricExporter, store_metric_reader
    from gecko_otel.store.rows import CollectorRow
    from gecko_otel.store.schema import HEAD_REVISION
    from gecko_otel.store.sql import SQLStore
    from gecko_otel.store.store import Store
    from gecko_otel.store.writer import StoreWriter

__all__ = [
    "HEAD_REVISION",
    "CollectorRow",
    "MemoryStore",
    "SQLStore",
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

_LAZY = {
    "HEAD_REVISION": "schema",
    "CollectorRow": "rows",
    "SQLStore": "sql",
    "Store": "store",
    "StoreMetricExporter": "metrics",
    "StoreWriter": "writer",
    "check_url": "engine",
    "create_store_engine": "engine",
    "current_revision": "engine",
    "migrate": "engine",
    "parse_url": "engine",
    "store_metric_reader": "metrics",
}


if not TYPE_CHECKING:  # type checkers see the imports above, so a typo stays an error
    __getattr__, __dir__ = lazy_names(
        __name__,
        {name: f"{__name__}.{module}" for name, module in _LAZY.items()},
        globals(),
        __all__,
    )
