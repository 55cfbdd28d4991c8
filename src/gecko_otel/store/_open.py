"""Choosing the backend: memory without a database, SQL with one."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gecko_otel.store.memory import MemoryStore

logger = logging.getLogger("gecko_otel.store")

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gecko_otel._config import MonitorConfig
    from gecko_otel._history.memory import History
    from gecko_otel.store.metrics import StoreMetricExporter
    from gecko_otel.store.store import Store
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
    from gecko_otel.store.sql import SQLStore  # noqa: PLC0415 - SQL only when asked

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


def open_store(
    database: str | Engine, *, service_name: str, service_instance_id: str | None
) -> tuple[Store, bool]:
    """The Store, and whether its schema is current; before anything else starts.

    SQLAlchemy is imported here, not with this module, so a memory-only
    process never loads it.

    Raises:
        ConfigError: The URL is unusable, its driver is missing, the database
            was written by a newer gecko-otel, or a SQLite file is damaged;
            nothing is left open.
    """
    # SQL only when a database is configured.
    from sqlalchemy import Engine  # noqa: PLC0415
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    from gecko_otel.store.engine import (  # noqa: PLC0415
        check_sqlite_integrity,
        configure_sqlite,
        create_store_engine,
        is_transient,
    )
    from gecko_otel.store.store import Store  # noqa: PLC0415

    if isinstance(database, Engine):
        engine, owned = database, False
    else:
        engine, owned = create_store_engine(database), True
    store = Store(
        engine,
        service_name=service_name,
        service_instance_id=service_instance_id,
        owns_engine=owned,
    )
    opened = False
    try:
        configure_sqlite(engine)
        check_sqlite_integrity(engine)
        store.ensure_schema()
        opened = True
    except DBAPIError as exc:
        if not is_transient(exc):
            raise
        logger.warning(
            "gecko_otel: store %s unreachable at start (%s); runs are kept in the "
            "queue and written when it is back, but health and alerts start empty",
            store.describe(),
            str(exc).splitlines()[0][:200],
        )
        opened = True  # kept: the writer retries until the database answers
        return store, False
    finally:
        if not opened:
            store.close()  # disposes only an engine it created
    return store, True
