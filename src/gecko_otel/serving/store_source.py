"""`StoreSource`: the status server's data read from a store that monitors write.

Read-only: nothing is migrated or written. The collectors' health is what
their monitors last stored (``collection_metadata``); their issues are the
messages of their active alerts. SQLAlchemy is imported with this module,
which a memory-only process never loads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gecko_otel._values.alerts import Alert
from gecko_otel._values.health import AlertLevel, CollectionStatus
from gecko_otel._values.records import ExecutionRecord
from gecko_otel.errors import ConfigError
from gecko_otel.serving.sources import CollectorView, SourceUnavailable, issues_from_alerts
from gecko_otel.store.engine import create_store_engine, current_revision
from gecko_otel.store.schema import HEAD_REVISION
from gecko_otel.store.store import Store

logger = logging.getLogger("gecko_otel.serving")

T = TypeVar("T")

_UNREACHABLE = "the store is unreachable"


class StoreSource:
    """A `StatusSource` over a store (SQLite file or PostgreSQL), read-only.

    Args:
        database: A URL (``sqlite:///path.db``, ``postgresql+psycopg://...``) or
            a SQLAlchemy ``Engine`` you own (never disposed).

    Raises:
        ConfigError: The URL is unusable, its driver is missing, or the SQLite
            file does not exist (nothing is created).

    Threading: every method is safe from any thread; each query takes its own
    connection from the engine's pool. An unreachable store is not an error
    here: queries raise `SourceUnavailable` until it answers again.
    """

    kind = "store"

    def __init__(self, database: str | Engine) -> None:
        if isinstance(database, Engine):
            engine, owned = database, False
        else:
            engine, owned = create_store_engine(database), True
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        if path and not path.startswith("file:") and not os.path.exists(path):
            if owned:
                engine.dispose()
            raise ConfigError(
                f"no store at {path!r}: give the database_url the monitors write to "
                "(a SQLite file is never created by the status server)"
            )
        self._store = Store(engine, service_name=None, owns_engine=owned)
        self._lock = threading.Lock()
        self._down = False

    def describe(self) -> str:
        """The database URL with any password masked."""
        return self._store.describe()

    def close(self) -> None:
        """Release the connections (and the engine, when it was made here)."""
        self._store.close()

    def alive(self) -> bool:
        """Always True: an unreachable store makes the server unready, not dead."""
        return True

    def readiness(self) -> tuple[bool, str | None]:
        """Ready when the store answers and its schema is the one this version reads."""
        try:
            with self._store.engine.connect() as connection:
                revision = current_revision(connection)
        except SQLAlchemyError as exc:
            self._seen_down(exc)
            return False, _UNREACHABLE
        self._seen_up()
        if revision != HEAD_REVISION:
            return False, (
                f"the store's schema is at revision {revision or 'none'}, not {HEAD_REVISION}: "
                "start a monitor on it, or run python -m gecko_otel.store migrate"
            )
        return True, None

    def collectors(self, runs: int) -> list[CollectorView]:
        """Every stored collector, its stored health and its ``runs`` newest runs."""

        def read() -> list[CollectorView]:
            rows = self._store.collectors()
            recent = self._store.newest_by_collector(runs) if runs > 0 else {}
            active = [a for a, _ in self._store.alerts(active_only=True)]
            issues = issues_from_alerts(active)
            return [
                CollectorView(
                    collector_type=row.collector_type,
                    status=_status(row.health_status),
                    health_score=row.health_score,
                    consecutive_failures=row.consecutive_failures,
                    total_executions=row.total_executions,
                    last_success=row.last_success,
                    last_failure=row.last_failure,
                    issues=issues.get(row.collector_type, ()),
                    recent_runs=tuple(recent.get(row.collector_type, ())),
                )
                for row in rows
            ]

        return self._read(read)

    def alerts(
        self,
        *,
        active_only: bool,
        collector_type: str | None,
        level: AlertLevel | None,
        limit: int | None,
    ) -> list[Alert]:
        """Stored alerts of every process, newest first."""
        return self._read(
            lambda: [
                alert
                for alert, _ in self._store.alerts(
                    level=level,
                    collector_type=collector_type,
                    active_only=active_only,
                    limit=limit,
                )
            ]
        )

    def runs(self, collector_type: str | None, limit: int) -> list[ExecutionRecord]:
        """Stored runs of every process, newest first."""
        return self._read(lambda: self._store.history(collector_type, limit=limit))

    def _read(self, query: Callable[[], T]) -> T:
        try:
            result = query()
        except SQLAlchemyError as exc:
            self._seen_down(exc)
            raise SourceUnavailable(_UNREACHABLE) from exc
        self._seen_up()
        return result

    def _seen_down(self, exc: BaseException) -> None:
        with self._lock:
            was_down, self._down = self._down, True
        if not was_down:  # once per outage, not once per poll of every open page
            logger.warning(
                "gecko_otel: status server: store %s unreachable (%s)",
                self.describe(),
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )

    def _seen_up(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.warning("gecko_otel: status server: store %s answers again", self.describe())


def _status(value: str | None) -> CollectionStatus:
    try:
        return CollectionStatus(value) if value is not None else CollectionStatus.UNKNOWN
    except ValueError:  # written by a newer version
        return CollectionStatus.UNKNOWN
