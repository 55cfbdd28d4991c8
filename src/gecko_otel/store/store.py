"""``Store``: reading and writing the four tables through one SQLAlchemy Engine.

Writes come from the background writer (`gecko_otel.store.writer`) in
batches, one transaction each: runs are inserted once (a run already stored
is skipped, so a retried batch never duplicates), alerts are upserted by id,
metric points are inserted, and each collector's ``collection_metadata`` row
is upserted with ``INSERT ... ON CONFLICT DO UPDATE`` whose totals add to
what is there, so several processes can share it without a lost update.

Reads are in `gecko_otel.store.queries`; rows and their conversions in
`gecko_otel.store.rows`.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from itertools import chain
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    any_,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import OperationalError

from gecko_otel._history.memory import duration_key
from gecko_otel._values.alerts import Alert, AlertState
from gecko_otel._values.health import AlertLevel
from gecko_otel._values.records import (
    FinishedRun,
    utc_ns,
)
from gecko_otel.errors import ConfigError
from gecko_otel.store.engine import migrate, safe_url, write_transaction
from gecko_otel.store.forking import keep_inherited
from gecko_otel.store.losses import BatchAbandoned
from gecko_otel.store.queries import StoreQueries
from gecko_otel.store.rows import (
    _A,
    _H,
    _SQLITE_IDS_PER_SELECT,
    _SQLITE_RUNS_PER_INSERT,
    CollectorUpdate,
    clean_json,
    clean_text,
    json_text,
    sqlite_chunks,
    sqlite_insert_runs,
    sqlite_stored_ids,
    sqlite_time,
)
from gecko_otel.store.schema import (
    NAME_LENGTH,
    performance_metrics,
    system_alerts,
)
from gecko_otel.store.statements import WRITE_STATEMENTS, build_statement

logger = logging.getLogger("gecko_otel.store")


class Store(StoreQueries):
    """The SQL side of a Monitor: one Engine, the four tables.

    Args:
        engine: A SQLite or PostgreSQL engine whose schema is current
            (`gecko_otel.store.engine.migrate`).
        service_name: Written beside runs, alerts and collectors, so a
            restarted process recognises its own.
        service_instance_id: Written beside runs and alerts.
        owns_engine: Dispose the engine on `close` (False for an
            Engine the user passed in).

    Threading: methods may be called from any thread; each takes its own
    connection from the engine's pool.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        service_name: str | None = None,
        service_instance_id: str | None = None,
        owns_engine: bool = True,
    ) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"the store supports SQLite and PostgreSQL engines, not {engine.dialect.name!r}"
            )
        self.engine = engine
        self.service_name = clean_text(service_name, NAME_LENGTH)
        #: Whether the instance id was made up here (a fork makes a new one).
        self.generated_instance_id = service_instance_id is None
        self.service_instance_id = clean_text(service_instance_id or uuid.uuid4().hex, 64)
        self._owns_engine = owns_engine
        self._dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        #: The SQLite file (None for PostgreSQL or memory), and its identity when
        #: the schema was made there.
        self._path = os.path.abspath(database) if database and database != ":memory:" else None
        self._file: tuple[int, int] | None = None
        #: Times the SQLite file was found deleted or replaced, and made again.
        self.replaced = 0
        self._statements: dict[str, Any] = {}

    def ensure_schema(self) -> None:
        """Migrate the schema to the newest revision, once per Store.

        Raises:
            ConfigError: The database was written by a newer gecko-otel.
            sqlalchemy.exc.OperationalError: The database is unreachable, or
                its file vanished while its schema was made (the writer
                retries later).
        """
        if self._schema_ready and not self._file_replaced():
            return
        with self._schema_lock:
            if not self._schema_ready:
                try:
                    self._make_schema()
                except Exception:
                    # A connection left on a file that was moved or deleted meanwhile
                    # fails every statement: the retry starts from fresh ones.
                    self.engine.dispose()
                    raise
                self._warm_up()
                self._schema_ready = True

    def _make_schema(self) -> None:
        migrate(self.engine)
        self._file = self._file_identity()
        if self._path is not None and self._file is None:
            # Deleted again while its schema was made: had that passed, later checks
            # would find "no file" unchanged, and every write would go to the lost
            # file. Retried (transient), it is made once more.
            raise OperationalError(
                "ensure_schema", None, FileNotFoundError(f"{self._path} vanished")
            )

    def _warm_up(self) -> None:
        """Build the write statements and their cache keys now, not on the first write.

        SQLAlchemy makes each statement class's cache-key code with ``exec()``
        the first time; when that first write is the exit-time flush, the
        ``exec()`` makes CPython forget that an uncaught ``KeyboardInterrupt``
        is ending the process, which then exits with status 1 instead of by
        SIGINT.
        """
        statements = [self._statement(name) for name in WRITE_STATEMENTS]
        for statement in [*statements, performance_metrics.insert()]:
            generate = getattr(statement, "_generate_cache_key", None)
            if generate is not None:
                generate()

    def _file_identity(self) -> tuple[int, int] | None:
        path = self._path
        if path is None:
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _file_replaced(self) -> bool:
        """Whether the SQLite file was deleted or replaced since the schema was made.

        Connections keep writing into a deleted file as if nothing happened, so
        every batch checks (one ``stat``): a changed file is logged, the pool's
        connections are dropped and the schema is made again in the new file.
        """
        if self._path is None or self._file_identity() == self._file:
            return False
        logger.error(
            "gecko_otel: the SQLite store %s was deleted or replaced while in use; "
            "creating it again (runs stored before are in the old file, if anyone kept it)",
            self._path,
        )
        self.engine.dispose()
        self._schema_ready = False
        self.replaced += 1
        return True

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def describe(self) -> str:
        """The database URL with any password masked."""
        return safe_url(self.engine.url)

    def close(self) -> None:
        """Release the connections (and the engine, when the Store made it)."""
        if self._owns_engine:
            self.engine.dispose()

    def after_fork(self) -> None:
        """In a forked child: never reuse, nor close, the parent's pooled connections.

        They are dropped from the engine (``dispose(close=False)``) and kept
        alive, so a SQLite connection is never closed here (see
        `gecko_otel.store.forking`); the child opens its own. A child is
        another instance: it gets its own ``service_instance_id`` unless the
        Resource named one.
        """
        self._schema_lock = threading.Lock()  # a thread migrating may have held it
        if self.backend == "sqlite":
            keep_inherited(self.engine.pool)
        self.engine.dispose(close=False)
        if self.generated_instance_id:
            self.service_instance_id = uuid.uuid4().hex

    # -- writing (the background writer's thread) ----------------------------------

    def write(
        self,
        runs: Sequence[FinishedRun],
        alerts: Sequence[Mapping[str, Any]],
        metrics: Sequence[Mapping[str, Any]],
        health: Mapping[str, tuple[str, float | None]] | None = None,
        *,
        before_commit: Callable[[], bool] | None = None,
    ) -> None:
        """Write one batch in one transaction (see the module docs).

        ``health`` is the latest health status and score of collectors,
        stored in their ``collection_metadata`` rows. ``before_commit`` is
        asked just before the commit; when it answers False the transaction
        is rolled back and `BatchAbandoned` raised.
        """
        self.ensure_schema()
        run_rows: list[Any] = (
            [self._sqlite_run_values(run) for run in runs]
            if self.backend == "sqlite"
            else [self.run_row(run) for run in runs]
        )
        latest: dict[str, Mapping[str, Any]] = {}
        for row in alerts:  # the last snapshot of each alert wins
            latest[row["id"]] = row
        with write_transaction(self.engine) as conn:
            if run_rows:
                # Only runs really inserted count in the collectors' totals: a
                # batch retried after a lost commit acknowledgement adds nothing.
                stored = self._insert_runs(conn, runs, run_rows)
                updates: dict[str, CollectorUpdate] = {}
                for run in runs:
                    if run.execution_id not in stored:
                        continue
                    name = run.collector_type
                    update_ = updates.get(name)
                    if update_ is None:
                        update_ = updates[name] = CollectorUpdate(
                            clean_text(name, NAME_LENGTH) or ""
                        )
                    update_.add(run)
                now = datetime.now(timezone.utc)
                # Sorted, so two writers lock the rows in the same order.
                ordered = sorted(updates.values(), key=lambda u: u.collector_type)
                if ordered:
                    conn.execute(
                        self._statement("collectors"),
                        [self._collector_row(u, now) for u in ordered],
                    )
                    # Batches of several processes interleave: the streak is
                    # what the stored runs say, failures after the last success
                    # (two short index range scans per collector).
                    conn.execute(
                        self._statement("streak"), [{"c": u.collector_type} for u in ordered]
                    )
            if health:
                conn.execute(
                    self._statement("health"),
                    [
                        {"c": clean_text(name, NAME_LENGTH), "s": status, "h": score}
                        for name, (status, score) in sorted(health.items())
                    ],
                )
            if latest:
                conn.execute(self._statement("alerts"), list(latest.values()))
            if metrics:
                conn.execute(performance_metrics.insert(), list(metrics))
            if before_commit is not None and not before_commit():
                raise BatchAbandoned  # rolled back: shutdown counted the batch as lost

    def run_row(self, run: FinishedRun) -> dict[str, Any]:
        """The ``execution_history`` row of a run."""
        duration = run.duration_seconds
        return {
            "execution_id": run.execution_id,
            "collector_type": clean_text(run.collector_type, NAME_LENGTH),
            "status": run.status.value,
            "start_time": utc_ns(run.start_ns),
            "end_time": utc_ns(run.end_ns) if run.end_ns is not None else None,
            "duration_seconds": duration,
            "duration_bucket": duration_key(duration) if duration is not None else None,
            "records_collected": run.records_collected,
            "error_type": clean_text(run.error_type, NAME_LENGTH),
            "error_message": clean_text(run.error_message),
            "warnings": [clean_text(w) for w in run.warnings],
            "errors": [clean_text(e) for e in run.errors],
            "dropped_messages": run.dropped_messages,
            "metadata": clean_json(
                {k: list(v) if isinstance(v, tuple) else v for k, v in run.metadata.items()}
            ),
            "trace_id": f"{run.trace_id:032x}" if run.trace_id is not None else None,
            "span_id": f"{run.span_id:016x}" if run.span_id is not None else None,
            "service_name": self.service_name,
            "service_instance_id": self.service_instance_id,
        }

    def _insert_runs(
        self, conn: Connection, runs: Sequence[FinishedRun], rows: list[Any]
    ) -> set[str]:
        """Insert a batch's runs, skipping those already stored; the ids really inserted.

        The ids already stored are looked up first instead of asking the INSERT
        to return what it inserted: with RETURNING, SQLAlchemy sends one
        statement with a placeholder per value (18,000 a batch), which psycopg
        parses anew each time (half the writer's time on PostgreSQL), and SQLite
        steps, releasing the GIL, once per returned row. An id is only ever
        stored twice by this process retrying a batch, so no other writer can
        insert it between the look-up and the INSERT.
        """
        ids = [run.execution_id for run in runs]
        if self.backend != "sqlite":
            wanted = bindparam("ids", ids, type_=ARRAY(String()))
            existing = set(
                conn.execute(
                    select(_H.execution_id).where(_H.execution_id == any_(wanted))
                ).scalars()
            )
            conn.execute(self._statement("runs"), rows)  # psycopg pipelines an executemany
            return {i for i in ids if i not in existing}
        # SQLite: a few statements of many rows, not executemany, which steps (and
        # releases the GIL) once per row; a busy collector thread then keeps the GIL
        # a whole switch interval (5 ms) each time and starves the writer.
        # Both as plain SQL: compiling an IN of a thousand bound parameters, and
        # flattening the rows value by value in Python, were a fifth of its time.
        existing = set()
        for part in sqlite_chunks(len(ids), _SQLITE_IDS_PER_SELECT):
            chunk = ids[part]
            existing.update(
                row[0] for row in conn.exec_driver_sql(sqlite_stored_ids(len(chunk)), tuple(chunk))
            )
        for part in sqlite_chunks(len(rows), _SQLITE_RUNS_PER_INSERT):
            chunk = rows[part]
            conn.exec_driver_sql(sqlite_insert_runs(len(chunk)), tuple(chain.from_iterable(chunk)))
        return {i for i in ids if i not in existing}

    def _sqlite_run_values(self, run: FinishedRun) -> tuple[Any, ...]:
        """`run_row` as the values SQLite stores, in ``_RUN_COLUMNS`` order.

        What SQLAlchemy's types would send (ISO text times, JSON text), made in
        one pass: their per-value processing was a third of the writer's time.
        """
        duration = run.duration_seconds
        end_ns = run.end_ns
        return (
            run.execution_id,
            clean_text(run.collector_type, NAME_LENGTH),
            run.status,  # a str: SQLite stores its value
            sqlite_time(run.start_ns),
            sqlite_time(end_ns) if end_ns is not None else None,
            duration,
            duration_key(duration) if duration is not None else None,
            run.records_collected,
            clean_text(run.error_type, NAME_LENGTH),
            clean_text(run.error_message),
            json_text(run.warnings, "[]"),
            json_text(run.errors, "[]"),
            run.dropped_messages,
            json_text(dict(run.metadata), "{}"),
            f"{run.trace_id:032x}" if run.trace_id is not None else None,
            f"{run.span_id:016x}" if run.span_id is not None else None,
            self.service_name,
            self.service_instance_id,
        )

    def alert_row(self, alert: Alert, notified_level: AlertLevel | None) -> dict[str, Any]:
        """The ``system_alerts`` row of an alert snapshot."""
        return {
            "id": alert.id,
            "collector_type": clean_text(alert.collector_type, NAME_LENGTH),
            "rule": clean_text(alert.rule, NAME_LENGTH),
            "level": alert.level.value,
            "state": alert.state.value,
            "message": clean_text(alert.message) or "",
            "metadata": clean_json(dict(alert.metadata)),
            "fired_at": alert.fired_at or alert.timestamp,
            "last_notified_at": alert.last_notified_at,
            "notified_level": notified_level.value if notified_level is not None else None,
            "notifications": alert.notifications,
            "acknowledged_at": alert.acknowledged_at,
            "resolved_at": alert.resolved_at,
            "suppressed": alert.suppressed,
            "service_name": self.service_name,
            "service_instance_id": self.service_instance_id,
            "updated_at": datetime.now(timezone.utc),
        }

    def alert_states(self, ids: Iterable[str]) -> dict[str, tuple[AlertState, AlertLevel]]:
        """The stored state and level of each of these alerts (ids not stored are left out)."""
        wanted = list(ids)
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return {
                alert_id: (AlertState(state), AlertLevel(level))
                for alert_id, state, level in conn.execute(
                    select(_A.id, _A.state, _A.level).where(_A.id.in_(wanted))
                )
            }

    def _statement(self, name: str) -> Any:
        """The write statements, built once per Store (building one cost more than running it)."""
        statement = self._statements.get(name)
        if statement is None:
            statement = self._statements[name] = build_statement(name, self._dialect)
        return statement

    def _collector_row(self, u: CollectorUpdate, now: datetime) -> dict[str, Any]:
        return {
            "collector_type": u.collector_type,
            "first_run": u.first_run,
            "last_run": u.last_run,
            "last_status": u.last_status,
            "last_success": u.last_success,
            "last_failure": u.last_failure,
            "total_executions": u.total_executions,
            "successful_executions": u.successful_executions,
            "failed_executions": u.failed_executions,
            "total_records": u.total_records,
            "consecutive_failures": 0,  # set from the stored runs right after
            "health_status": None,  # set by health snapshots
            "health_score": None,
            "service_name": self.service_name,
            "updated_at": now,
        }

    def set_alert_state(self, alert_id: str, state: AlertState, at: datetime) -> bool:
        """Acknowledge or resolve an alert row directly (one another process owns)."""
        values: dict[str, Any] = {"state": state.value, "updated_at": datetime.now(timezone.utc)}
        if state is AlertState.ACKNOWLEDGED:
            values["acknowledged_at"] = at
            wanted = _A.state == AlertState.FIRING.value
        else:
            values["resolved_at"] = at
            wanted = _A.state != AlertState.RESOLVED.value
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(system_alerts).where(_A.id == alert_id, wanted).values(**values)
            )
            return bool(result.rowcount)

    # -- reading ---------------------------------------------------------------------
