"""Choosing the backend: memory without a database, SQL with one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gecko_otel.store.memory import MemoryStore

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gecko_otel._config import MonitorConfig
    from gecko_otel._history.memory import History
    from gecko_otel.store.metrics import StoreMetricExporter
    from gecko_otel.typing import RunStore


def open_backend(
    database: str | Engine | None,
    config: MonitorConfig,
    history: History,
    *,
    resource_attributes: dict[str, Any],
    metric_exporter: StoreMetricExporter | None = None,
    before_exit: Callable[[], None] | None = None,
) -> RunStore:
    """A `MemoryStore` over ``history``, or a `SQLStore` for ``database``.

    SQLAlchemy is imported only for a database. The database is opened and its
    schema checked here, before the Monitor starts anything.

    Raises:
        ConfigError: The database URL is unusable, its driver is missing, or
            the database was written by a newer gecko-otel.
    """
    instance = resource_attributes.get("service.instance.id")
    service_name = str(resource_attributes.get("service.name") or "unknown_service")
    service_instance_id = str(instance) if instance else None
    memory = MemoryStore(
        history, service_name=service_name, service_instance_id=service_instance_id
    )
    if database is None:
        return memory
    from gecko_otel.store.sql import SQLStore, open_store  # noqa: PLC0415 - SQL only when asked

    store, ready = open_store(
        database, service_name=service_name, service_instance_id=service_instance_id
    )
    return SQLStore(
        store,
        memory,
        config,
        ready=ready,
        metric_exporter=metric_exporter,
        before_exit=before_exit,
    )
