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


def open_reader(database: str) -> Store:
    """A Store on an existing, current database, for the operator's side; no migration.

    ``database`` is a URL or a SQLite file path. Nothing is created: a
    missing SQLite file, a database without the gecko-otel schema or at an
    older revision is refused with a message saying what to run. Reads the
    schema version with one query (Alembic, slow to import, is not loaded).

    Raises:
        ConfigError: The URL is unusable, the file is missing, the schema is
            absent, older (run ``gecko-otel db upgrade``) or newer, or the
            database cannot be reached.
    """
    from gecko_otel.store.engine import create_store_engine  # noqa: PLC0415
    from gecko_otel.store.store import Store  # noqa: PLC0415

    engine = create_store_engine(reader_url(database))
    try:
        _check_readable(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, service_name="gecko-otel-cli", owns_engine=True)


def _check_readable(engine: Engine) -> None:
    """Raise ConfigError unless ``engine`` holds a gecko-otel schema at our revision."""
    import os  # noqa: PLC0415

    from gecko_otel.errors import ConfigError  # noqa: PLC0415
    from gecko_otel.store.engine import safe_url  # noqa: PLC0415
    from gecko_otel.store.schema import HEAD_REVISION  # noqa: PLC0415

    shown = safe_url(engine.url)
    upgrade = f"run: gecko-otel db upgrade --database-url '{shown}'"
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if path and not path.startswith("file:") and not os.path.isfile(path):
        raise ConfigError(
            f"no database file at {os.path.abspath(path)}; check the path "
            "(or --database-url, GECKO_OTEL_DATABASE_URL)"
        )
    revision = _stored_revision(engine, shown)
    if revision is None:
        raise ConfigError(f"{shown} holds no gecko-otel store (no schema); {upgrade}")
    # Revisions are numbered in order ("0001", "0002", ...).
    if revision < HEAD_REVISION:
        raise ConfigError(
            f"{shown} is at schema revision {revision}, older than this gecko-otel's "
            f"{HEAD_REVISION}; {upgrade}"
        )
    if revision != HEAD_REVISION:
        raise ConfigError(
            f"{shown} is at schema revision {revision}, written by a newer gecko-otel "
            f"(this one reads {HEAD_REVISION}); upgrade gecko-otel"
        )


def _stored_revision(engine: Engine, shown: str) -> str | None:
    """The schema revision in one query (Alembic is slow to import); None without one."""
    from sqlalchemy import inspect, text  # noqa: PLC0415
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    from gecko_otel.errors import ConfigError  # noqa: PLC0415
    from gecko_otel.store.schema import VERSION_TABLE  # noqa: PLC0415

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    except DBAPIError as exc:
        lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
        first = (lines or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot read the database {shown}: {first}") from None
    return None if revision is None else str(revision)


def reader_url(database: str) -> str:
    """A database URL from a URL or a bare SQLite file path (``gecko_otel.db``)."""
    if "://" in database:
        return database
    import os  # noqa: PLC0415

    return f"sqlite:///{os.path.abspath(database)}"
