"""Engines and migrations: turning a ``database_url`` into a ready, current schema.

``sqlite:///path`` gets WAL journaling (readers never wait for the writer,
several processes can share the file), ``synchronous=NORMAL`` (durable at
each checkpoint, safe against corruption), a busy timeout, and transactions
that take the write lock up front (``BEGIN IMMEDIATE``) when they write, so
two processes never deadlock upgrading a read lock. ``postgresql://`` and
``postgresql+psycopg://`` get psycopg 3 with a small connection pool that
checks connections before use and a connect timeout, so an outage costs the
background writer a retry, never a hang.

Migrations are Alembic revisions shipped in ``gecko_otel/store/migrations``,
applied under a lock (an advisory lock on PostgreSQL, the write lock on
SQLite) so processes starting together migrate once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    NoSuchModuleError,
    OperationalError,
    TimeoutError,
)

from gecko_otel._capture.metadata import MetadataSanitizer
from gecko_otel.errors import ConfigError
from gecko_otel.store.forking import no_fork_inside
from gecko_otel.store.schema import HEAD_REVISION, VERSION_TABLE

logger = logging.getLogger("gecko_otel.store")
_SANITIZER: Final = MetadataSanitizer()

#: Execution option that makes a SQLite transaction ``BEGIN IMMEDIATE``.
WRITE: Final = "gecko_otel_write"
#: Seconds a SQLite connection waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT: Final = 30.0
#: Seconds a PostgreSQL connection attempt may take (unless the URL sets one).
PG_CONNECT_TIMEOUT: Final = 5
#: Arbitrary, fixed key of the advisory lock held while migrating.
_MIGRATION_LOCK: Final = 0x6765636B6F  # "gecko"


def is_transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed later (the database is down or busy)."""
    if isinstance(exc, DisconnectionError | TimeoutError | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (``BEGIN IMMEDIATE`` on SQLite), committed
    at the end of the block; ``fork()`` waits until it ends (`gecko_otel.store.forking`)."""
    with (
        no_fork_inside(),
        engine.connect().execution_options(**{WRITE: True}) as connection,
        connection.begin(),
    ):
        yield connection


def parse_url(url: str | URL) -> URL:
    """A SQLAlchemy URL from text, with a clear error for what we cannot use.

    ``postgresql://`` means psycopg 3 (the ``postgresql`` extra), not psycopg2.

    Raises:
        ConfigError: Not a URL, an in-memory SQLite database, or a backend
            other than SQLite and PostgreSQL.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"database_url {_safe(url)!r} is not a database URL ({exc}); use "
            "'sqlite:///path/to/gecko_otel.db' or 'postgresql+psycopg://user@host/db'"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
            raise ConfigError(
                "database_url: an in-memory SQLite database is not a store; give a file "
                "('sqlite:///gecko_otel.db'), or set no database_url to keep history in memory"
            )
        return parsed
    if backend == "postgresql":
        if parsed.get_driver_name() in ("psycopg2", "psycopg2cffi", "pg8000", "asyncpg"):
            raise ConfigError(
                f"database_url: driver {parsed.get_driver_name()!r} is not supported; "
                "use 'postgresql+psycopg://' (pip install 'gecko-otel[postgresql]')"
            )
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"database_url: backend {backend!r} is not supported; use SQLite "
        "('sqlite:///path.db') or PostgreSQL ('postgresql+psycopg://user@host/db')"
    )


def check_url(url: str | URL) -> URL:
    """Everything about ``url`` that can be checked without connecting.

    Raises:
        ConfigError: As `parse_url`, or the SQLite file's directory
            does not exist, or the PostgreSQL driver is not installed.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        directory = os.path.dirname(os.path.abspath(path))
        if not path.startswith("file:") and not os.path.isdir(directory):
            raise ConfigError(
                f"database_url: directory {directory!r} for the SQLite file does not exist; "
                "create it or choose another path"
            )
    elif importlib.util.find_spec("psycopg") is None:
        raise ConfigError(
            "database_url: PostgreSQL needs the psycopg driver: "
            "pip install 'gecko-otel[postgresql]'"
        )
    return parsed


def create_store_engine(url: str | URL) -> Engine:
    """An Engine for ``url`` set up as the module docs describe.

    Raises:
        ConfigError: See `check_url`.
    """
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
            pool_size=4,
            max_overflow=4,
        )
        configure_sqlite(engine)
        return engine
    query = dict(parsed.query)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
    try:
        return create_engine(
            parsed,
            connect_args=connect_args,
            pool_size=4,
            max_overflow=4,
            pool_pre_ping=True,
            pool_recycle=1800,
        )
    except (ImportError, NoSuchModuleError):
        raise ConfigError(
            "database_url: PostgreSQL needs the psycopg driver: "
            "pip install 'gecko-otel[postgresql]'"
        ) from None


#: SQLite engines whose connections are set up already (listeners added once).
_configured: weakref.WeakSet[Engine] = weakref.WeakSet()


def configure_sqlite(engine: Engine) -> None:
    """WAL, pragmas and explicit BEGIN for a SQLite engine (also one you passed in)."""
    if engine.dialect.name != "sqlite" or engine in _configured:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN is off; "begin" below issues ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    _configured.add(engine)


#: SQLite files found sound, by (real path, size, modification time).
_checked: set[tuple[str, int, int]] = set()


def check_sqlite_integrity(engine: Engine) -> None:
    """Refuse a SQLite file that is not a database or is corrupt (``PRAGMA quick_check``).

    Writing into a corrupt file would look healthy while losing data. The
    check reads the whole file once, at start (about a second per few
    hundred MB).

    Raises:
        ConfigError: The file is damaged; the message says where it is and
            what to do.
    """
    if engine.dialect.name != "sqlite":
        return
    path = engine.url.database
    if not path or path == ":memory:" or not os.path.exists(path) or not os.path.getsize(path):
        return
    stat = os.stat(path)
    identity = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if identity in _checked:  # setup() checks first, then the Monitor: read it once
        return
    problem: str | None = None
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            problem = "; ".join(str(r[0]) for r in rows[:3])
    except DBAPIError as exc:
        if is_transient(exc) and "not a database" not in str(exc) and "malformed" not in str(exc):
            raise
        problem = str(exc.orig) if exc.orig is not None else str(exc)
    if problem is not None:
        problem = " ".join(problem.split())  # one line
        raise ConfigError(
            f"the SQLite store {path} is damaged ({problem[:200]}); gecko-otel will not write "
            "into it: move the file aside (or restore a backup) and start again, "
            "and a new store is created"
        )
    _checked.add(identity)


def _set_wal(cursor: Any) -> None:
    """``journal_mode = WAL``, retried: on a new file, connections opening it
    together can get "database is locked" at once, without the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def preflight(database: str | URL | Engine) -> None:
    """Check a store before anything is built around it (``setup()`` calls this first).

    The URL, the driver, and the schema (migrated now, so a database written
    by a newer gecko-otel is refused here). An unreachable database is not
    an error: the Monitor starts and its writer waits for it.

    Raises:
        ConfigError: The store cannot be used (see `check_url`, `migrate`).
    """
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    engine = database if isinstance(database, Engine) else create_store_engine(database)
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"the store supports SQLite and PostgreSQL engines, not {engine.dialect.name!r}"
        )
    try:
        configure_sqlite(engine)
        check_sqlite_integrity(engine)
        migrate(engine)
    except DBAPIError as exc:
        if not is_transient(exc):
            raise
    finally:
        if engine is not database:
            engine.dispose()


def current_revision(connection: Connection) -> str | None:
    """The schema revision recorded in the database, or None for an empty one."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415 - Alembic is slow to import

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision`` (the newest by default); returns where it ended.

    Safe to run from several processes at once: they take turns and later
    ones find nothing to do. Nothing is rewritten when the database is
    already current.

    Raises:
        ConfigError: The database is at a revision this gecko-otel does not
            know (written by a newer version).
        sqlalchemy.exc.OperationalError: The database cannot be reached.
    """
    with engine.connect() as connection:
        current = current_revision(connection)
        connection.rollback()
    if revision == "head" and current == HEAD_REVISION:
        return current
    _check_known(current)
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = current_revision(connection)  # another process may have migrated meanwhile
        _check_known(current)
        if not (revision == "head" and current == HEAD_REVISION):
            _upgrade(connection, revision)
        return current_revision(connection)


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("gecko_otel.store") / "migrations")
    )
    config.attributes["connection"] = connection
    logger.info("gecko_otel: migrating the store to revision %s", revision)
    command.upgrade(config, revision)


def _check_known(current: str | None) -> None:
    if current is not None and current not in _known_revisions():
        raise ConfigError(
            f"the database schema is at revision {current!r}, which this gecko-otel "
            f"(schema {HEAD_REVISION!r}) does not know: it was written by a newer version. "
            "Upgrade gecko-otel, or point database_url at another database."
        )


def _known_revisions() -> frozenset[str]:
    versions = resources.files("gecko_otel.store") / "migrations" / "versions"
    return frozenset(
        entry.name.split("_", 1)[0]
        for entry in versions.iterdir()
        if entry.name[:1].isdigit() and entry.name.endswith(".py")
    )


def _safe(url: object) -> str:
    """``url`` as text with any password masked (for messages)."""
    try:
        return safe_url(make_url(str(url)))
    except (ArgumentError, ValueError, TypeError):  # no password we can find in it
        return "<unparseable>"


#: Query parameters of a database URL that hold a secret (libpq's, and any
#: whose name is a credential key part).
_SECRET_PARAMS: Final = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def safe_url(url: URL) -> str:
    """A database URL as it may be logged or exported: the password masked, in the
    userinfo and in the query (``?password=...``, ``?sslpassword=...``)."""
    sanitizer = _SANITIZER
    hidden = {
        key: "***"  # as SQLAlchemy masks the userinfo password
        for key in url.query
        if key.lower() in _SECRET_PARAMS or sanitizer.is_sensitive(key)
    }
    if hidden:
        url = url.update_query_dict(hidden)
    return url.render_as_string(hide_password=True)
