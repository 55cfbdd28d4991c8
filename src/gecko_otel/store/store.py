"""``Store``: reading and writing the four tables through one SQLAlchemy Engine.

Writes come from the background writer (:mod:`gecko_otel.store.writer`) in
batches, one transaction each: runs are inserted once (a run already stored
is skipped, so a retried batch never duplicates), alerts are upserted by id,
metric points are inserted, and each collector's ``collection_metadata`` row
is upserted with ``INSERT ... ON CONFLICT DO UPDATE`` whose totals add to
what is there, so several processes can share it without a lost update.

Reads answer the Monitor's queries in SQL over indexed columns:
statistics are counts and sums grouped by status plus a GROUP BY over each
run's duration bucket for percentiles (the same 1 % sketch as in memory),
never a scan of rows into Python. Exports stream rows in chunks.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import IO, Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from gecko_otel._alerts.values import Alert, AlertLevel, AlertState
from gecko_otel._history.memory import _STATUS_INDEX, Aggregate, duration_key
from gecko_otel._history.records import (
    ExecutionRecord,
    ExecutionStatistics,
    ExecutionStatus,
    FinishedRun,
    make_record,
    to_ns,
    utc_ns,
)
from gecko_otel.errors import ConfigError
from gecko_otel.store.engine import WRITE, migrate
from gecko_otel.store.export import EXPORT_COLUMNS, write_export
from gecko_otel.store.schema import (
    NAME_LENGTH,
    UTCDateTime,
    collection_metadata,
    execution_history,
    performance_metrics,
    system_alerts,
)

logger = logging.getLogger("gecko_otel.store")

#: Rows deleted per statement by retention, so no lock is held for long.
CLEANUP_BATCH: Final = 5000
#: Rows fetched per round trip by streaming exports.
STREAM_CHUNK: Final = 1000

_ERROR_STATUSES: Final = (ExecutionStatus.FAILURE.value, ExecutionStatus.TIMEOUT.value)
_OK_STATUSES: Final = (ExecutionStatus.SUCCESS.value, ExecutionStatus.PARTIAL.value)
_NOT_STARTED: Final = (ExecutionStatus.MISSED.value, ExecutionStatus.SKIPPED.value)
_H = execution_history.c
#: execution_history's columns in the order of the SQLite insert (all but the key).
_RUN_COLUMNS: Final = tuple(c.name for c in execution_history.c if c.name != "id")
#: Bound values per SQLite statement (32,766 since SQLite 3.32, 999 before).
_SQLITE_VARIABLES: Final = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
#: Runs per SQLite INSERT (500 x 18 values): one statement is one sqlite3_step.
_SQLITE_RUNS_PER_INSERT: Final = min(500, _SQLITE_VARIABLES // len(_RUN_COLUMNS))
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_A = system_alerts.c
_M = collection_metadata.c


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def clean_text(value: str | None, limit: int | None = None) -> str | None:
    """Text a database accepts: NUL characters replaced (PostgreSQL refuses them), cut."""
    if value is None:
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates, e.g. from os.fsdecode()
            value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit is not None and len(value) > limit else value


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or Infinity; PostgreSQL refuses them
    if isinstance(value, Mapping):
        return {clean_text(str(k)): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return value


@dataclass(slots=True)
class CollectorUpdate:
    """What one batch adds to a collector's ``collection_metadata`` row."""

    collector_type: str
    first_run: datetime | None = None
    last_run: datetime | None = None
    last_status: str | None = None
    last_success: datetime | None = None
    last_failure: datetime | None = None
    total_executions: int = 0
    successful_executions: int = 0
    failed_executions: int = 0
    total_records: int = 0

    def add(self, run: FinishedRun) -> None:
        start = utc_ns(run.start_ns)
        ended = utc_ns(run.end_ns) if run.end_ns is not None else start
        status = run.status
        self.total_executions += 1
        self.total_records += run.records_collected
        if self.first_run is None or start < self.first_run:
            self.first_run = start
        if self.last_run is None or start >= self.last_run:
            self.last_run = start
            self.last_status = status.value
        if status.is_successful:
            self.successful_executions += 1
            if self.last_success is None or ended > self.last_success:
                self.last_success = ended
        elif status.is_error:
            self.failed_executions += 1
            if self.last_failure is None or ended > self.last_failure:
                self.last_failure = ended


@dataclass(frozen=True, slots=True)
class CollectorRow:
    """A collector's ``collection_metadata`` row, as read back."""

    collector_type: str
    first_run: datetime | None
    last_run: datetime | None
    last_status: str | None
    last_success: datetime | None
    last_failure: datetime | None
    total_executions: int
    successful_executions: int
    failed_executions: int
    total_records: int
    consecutive_failures: int
    health_status: str | None
    health_score: float | None
    service_name: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((f, getattr(self, f)) for f in self.__slots__)
        }


@dataclass(frozen=True, slots=True)
class WindowBucket:
    """Runs of one collector in one health-window bucket (for restoring health)."""

    collector_type: str
    bucket: int
    total: int
    ok: int
    duration_sum: float
    duration_count: int
    records: int


class Store:
    """The SQL side of a Monitor: one Engine, the four tables.

    Args:
        engine: A SQLite or PostgreSQL engine whose schema is current
            (:func:`gecko_otel.store.engine.migrate`).
        service_name: Written beside runs, alerts and collectors, so a
            restarted process recognises its own.
        service_instance_id: Written beside runs and alerts.
        owns_engine: Dispose the engine on :meth:`close` (False for an
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
        self._statements: dict[str, Any] = {}

    def ensure_schema(self) -> None:
        """Migrate the schema to the newest revision, once per Store.

        Raises:
            ConfigError: The database was written by a newer gecko-otel.
            sqlalchemy.exc.OperationalError: The database is unreachable
                (the writer retries later).
        """
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                migrate(self.engine)
                self._schema_ready = True

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def describe(self) -> str:
        """The database URL with any password masked."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the connections (and the engine, when the Store made it)."""
        if self._owns_engine:
            self.engine.dispose()

    def after_fork(self) -> None:
        """In a forked child: never reuse the parent's pooled connections.

        A child is another instance: it gets its own ``service_instance_id``
        unless the Resource named one.
        """
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
    ) -> None:
        """Write one batch in one transaction (see the module docs).

        ``health`` is the latest health status and score of collectors,
        stored in their ``collection_metadata`` rows.
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
        with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
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
                conn.execute(self._alert_upsert(), list(latest.values()))
            if metrics:
                conn.execute(performance_metrics.insert(), list(metrics))

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
            "metadata": _clean_json(
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
        existing = set()
        for i in range(0, len(ids), _SQLITE_VARIABLES):
            chunk = ids[i : i + _SQLITE_VARIABLES]
            existing.update(
                conn.execute(select(_H.execution_id).where(_H.execution_id.in_(chunk))).scalars()
            )
        for i in range(0, len(rows), _SQLITE_RUNS_PER_INSERT):
            chunk = rows[i : i + _SQLITE_RUNS_PER_INSERT]
            conn.exec_driver_sql(
                _sqlite_insert_runs(len(chunk)), tuple(v for row in chunk for v in row)
            )
        return {i for i in ids if i not in existing}

    def _sqlite_run_values(self, run: FinishedRun) -> tuple[Any, ...]:
        """:meth:`run_row` as the values SQLite stores, in ``_RUN_COLUMNS`` order.

        What SQLAlchemy's types would send (ISO text times, JSON text), made in
        one pass: their per-value processing was a third of the writer's time.
        """
        duration = run.duration_seconds
        end_ns = run.end_ns
        return (
            run.execution_id,
            clean_text(run.collector_type, NAME_LENGTH),
            run.status.value,
            _sqlite_time(run.start_ns),
            _sqlite_time(end_ns) if end_ns is not None else None,
            duration,
            duration_key(duration) if duration is not None else None,
            run.records_collected,
            clean_text(run.error_type, NAME_LENGTH),
            clean_text(run.error_message),
            _json_text(run.warnings, "[]"),
            _json_text(run.errors, "[]"),
            run.dropped_messages,
            _json_text(dict(run.metadata), "{}"),
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
            "metadata": _clean_json(dict(alert.metadata)),
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

    def _alert_upsert(self) -> Any:
        insert = self._dialect.insert(system_alerts)
        new = insert.excluded
        set_: dict[str, Any] = {c.name: new[c.name] for c in system_alerts.c if c.name != "id"}
        # An acknowledgement or resolution made elsewhere (another process,
        # the command line) is not undone by the owner's next snapshot: a
        # resolved row stays resolved, an acknowledged one stays acknowledged
        # unless the alert escalates. The owner picks the change up itself.
        resolved = _A.state == AlertState.RESOLVED.value
        keep_ack = and_(
            _A.state == AlertState.ACKNOWLEDGED.value,
            new.state == AlertState.FIRING.value,
            new.level == _A.level,
        )
        set_["state"] = case((resolved, _A.state), (keep_ack, _A.state), else_=new.state)
        set_["acknowledged_at"] = case(
            (resolved, _A.acknowledged_at),
            (keep_ack, _A.acknowledged_at),
            else_=new.acknowledged_at,
        )
        set_["resolved_at"] = case((resolved, _A.resolved_at), else_=new.resolved_at)
        return insert.on_conflict_do_update(index_elements=["id"], set_=set_)

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
            if name == "runs":
                statement = self._dialect.insert(execution_history).on_conflict_do_nothing(
                    index_elements=["execution_id"]
                )
            elif name == "streak":
                statement = _streak_update()
            elif name == "health":
                statement = (
                    update(collection_metadata)
                    .where(_M.collector_type == bindparam("c"))
                    .values(health_status=bindparam("s"), health_score=bindparam("h"))
                )
            else:
                statement = self._collector_upsert()
            self._statements[name] = statement
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

    def _collector_upsert(self) -> Any:
        """The ``collection_metadata`` upsert, executed with one parameter set per collector.

        Totals add to what is stored; ``consecutive_failures`` is left to
        :func:`_streak_update`, run after it in the same transaction.
        """
        insert = self._dialect.insert(collection_metadata)
        new = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=["collector_type"],
            set_={
                "first_run": _earliest(_M.first_run, new.first_run),
                "last_run": _latest(_M.last_run, new.last_run),
                "last_status": case(
                    (_M.last_run.is_(None), new.last_status),
                    (new.last_run >= _M.last_run, new.last_status),
                    else_=_M.last_status,
                ),
                "last_success": _latest(_M.last_success, new.last_success),
                "last_failure": _latest(_M.last_failure, new.last_failure),
                "total_executions": _M.total_executions + new.total_executions,
                "successful_executions": _M.successful_executions + new.successful_executions,
                "failed_executions": _M.failed_executions + new.failed_executions,
                "total_records": _M.total_records + new.total_records,
                "service_name": new.service_name,
                "updated_at": new.updated_at,
            },
        )

    def set_alert_state(self, alert_id: str, state: AlertState, at: datetime) -> bool:
        """Acknowledge or resolve an alert row directly (one another process owns)."""
        values: dict[str, Any] = {"state": state.value, "updated_at": datetime.now(timezone.utc)}
        if state is AlertState.ACKNOWLEDGED:
            values["acknowledged_at"] = at
            wanted = _A.state == AlertState.FIRING.value
        else:
            values["resolved_at"] = at
            wanted = _A.state != AlertState.RESOLVED.value
        with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            result = conn.execute(
                update(system_alerts).where(_A.id == alert_id, wanted).values(**values)
            )
            return bool(result.rowcount)

    # -- reading ---------------------------------------------------------------------

    def history(
        self,
        collector_type: str | None = None,
        *,
        limit: int | None = None,
        status: ExecutionStatus | None = None,
        since: datetime | None = None,
    ) -> list[ExecutionRecord]:
        """Stored runs newest first (by start time), filtered; arguments already checked."""
        query = self._history_query(collector_type, status, since).order_by(
            _H.start_time.desc(), _H.id.desc()
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def _history_query(
        self,
        collector_type: str | None,
        status: ExecutionStatus | None,
        since: datetime | None,
        until: datetime | None = None,
    ) -> Select[Any]:
        query = select(execution_history)
        if collector_type is not None:
            query = query.where(_H.collector_type == collector_type)
        if status is not None:
            query = query.where(_H.status == status.value)
        if since is not None:
            query = query.where(_H.start_time >= since)
        if until is not None:
            query = query.where(_H.start_time < until)
        return query

    def statistics(
        self,
        collector_type: str | None = None,
        *,
        window: float | None = None,
        now: datetime | None = None,
    ) -> ExecutionStatistics:
        """Statistics of the stored runs (started within ``window`` seconds, if given)."""
        conditions = []
        if collector_type is not None:
            conditions.append(_H.collector_type == collector_type)
        if window is not None:
            since = (now or datetime.now(timezone.utc)) - timedelta(seconds=window)
            conditions.append(_H.start_time >= since)
        totals = (
            select(
                _H.status,
                func.count(),
                func.sum(_H.duration_seconds),
                func.count(_H.duration_seconds),
                func.sum(_H.records_collected),
                func.min(_H.start_time, type_=UTCDateTime()),
                func.max(_H.start_time, type_=UTCDateTime()),
            )
            .where(*conditions)
            .group_by(_H.status)
        )
        buckets = (
            select(_H.duration_bucket, func.count())
            .where(*conditions, _H.duration_bucket.is_not(None))
            .group_by(_H.duration_bucket)
        )
        aggregate = Aggregate()
        with self.engine.connect() as conn:
            for status, count, dsum, dcount, records, first, last in conn.execute(totals):
                index = _STATUS_INDEX.get(ExecutionStatus(status))
                if index is None:  # pragma: no cover - every status has an index
                    continue
                aggregate.counts[index] += count
                aggregate.duration_sum += float(dsum or 0.0)
                aggregate.duration_count += dcount
                aggregate.records += int(records or 0)
                for moment in (first, last):
                    if moment is None:
                        continue
                    ns = to_ns(moment)
                    if aggregate.first is None or ns < aggregate.first:
                        aggregate.first = ns
                    if aggregate.last is None or ns > aggregate.last:
                        aggregate.last = ns
            for key, count in conn.execute(buckets):
                aggregate.sketch[int(key)] = aggregate.sketch.get(int(key), 0) + count
        return aggregate.statistics(collector_type, window)

    def collector_types(self) -> list[str]:
        """Every collector with a stored run, sorted."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(_M.collector_type)).scalars())

    def collectors(
        self, service_name: str | None = None, names: Iterable[str] = ()
    ) -> list[CollectorRow]:
        """``collection_metadata`` rows, by collector type.

        With ``service_name``, the rows that service wrote last plus those
        listed in ``names`` (collectors it ran recently whose row another
        service wrote last).
        """
        query = select(collection_metadata).order_by(_M.collector_type)
        if service_name is not None:
            wanted = list(names)
            query = query.where(
                (_M.service_name == service_name) | _M.collector_type.in_(wanted)
                if wanted
                else _M.service_name == service_name
            )
        with self.engine.connect() as conn:
            return [CollectorRow(**row._mapping) for row in conn.execute(query)]

    def alerts(
        self,
        *,
        level: AlertLevel | None = None,
        collector_type: str | None = None,
        active_only: bool = True,
        service_name: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[Alert, AlertLevel | None]]:
        """Stored alerts newest first, each with the level handlers last heard."""
        query = select(system_alerts).order_by(_A.fired_at.desc(), _A.id)
        if active_only:
            query = query.where(_A.state != AlertState.RESOLVED.value)
        if level is not None:
            query = query.where(_A.level == level.value)
        if collector_type is not None:
            query = query.where(_A.collector_type == collector_type)
        if service_name is not None:
            query = query.where(_A.service_name == service_name)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def window_buckets(
        self,
        since: datetime,
        width: float,
        service_name: str | None = None,
        longest_run: float = 86400.0,
    ) -> list[WindowBucket]:
        """Runs ended since ``since`` grouped per collector into ``width``-second buckets.

        The same buckets as the health evaluator's window (bucket id =
        unix end time // width); missed and skipped runs are left out as
        the evaluator leaves them out.
        """
        ended = func.coalesce(_H.end_time, _H.start_time)
        bucket: ColumnElement[Any]
        if self.backend == "postgresql":
            bucket = cast(func.floor(func.extract("epoch", ended) / width), BigInteger)
        else:
            # Exact microseconds from the stored text ('YYYY-MM-DD HH:MM:SS.ffffff'):
            # julianday() is a double, a few microseconds off, which moved runs
            # ending on a bucket boundary into the bucket before. Integer division
            # of positive integers floors.
            epoch_us = cast(func.strftime("%s", ended), BigInteger) * 1_000_000 + cast(
                func.substr(ended, 21, 6), BigInteger
            )
            bucket = epoch_us // max(1, round(width * 1_000_000))
        query = (
            select(
                _H.collector_type,
                bucket.label("bucket"),
                func.count(),
                func.sum(case((_H.status.in_(_OK_STATUSES), 1), else_=0)),
                func.sum(_H.duration_seconds),
                func.count(_H.duration_seconds),
                func.sum(_H.records_collected),
            )
            .where(
                # The start bound lets the index narrow the scan; only a run
                # longer than `longest_run` that ended after `since` is missed.
                _H.start_time >= since - timedelta(seconds=longest_run),
                ended >= since,
                _H.status.not_in(_NOT_STARTED),
            )
            .group_by(_H.collector_type, "bucket")
        )
        if service_name is not None:
            query = query.where(_H.service_name == service_name)
        with self.engine.connect() as conn:
            return [
                WindowBucket(
                    name, int(b), int(total), int(ok or 0), float(dsum or 0.0), int(dc), int(r or 0)
                )
                for name, b, total, ok, dsum, dc, r in conn.execute(query)
            ]

    def latest_runs(
        self, collector_types: Iterable[str], per_collector: int, service_name: str | None = None
    ) -> dict[str, list[FinishedRun]]:
        """The newest ``per_collector`` runs of each collector (of one service), oldest first."""
        out: dict[str, list[FinishedRun]] = {}
        with self.engine.connect() as conn:
            for name in collector_types:
                query = select(execution_history).where(_H.collector_type == name)
                if service_name is not None:
                    query = query.where(_H.service_name == service_name)
                rows = conn.execute(
                    query.order_by(_H.start_time.desc(), _H.id.desc()).limit(per_collector)
                ).all()
                out[name] = [FinishedRun.from_record(_record(row)) for row in reversed(rows)]
        return out

    def iter_history(
        self,
        collector_type: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        status: ExecutionStatus | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Stored runs oldest first as export rows, fetched ``STREAM_CHUNK`` at a time.

        Pages by key (start time, id), so memory stays flat and no
        server-side cursor is held open between chunks.
        """
        base = self._history_query(collector_type, status, since, until)
        after: tuple[datetime, int] | None = None
        while True:
            query = base
            if after is not None:
                query = query.where(
                    (_H.start_time > after[0]) | and_(_H.start_time == after[0], _H.id > after[1])
                )
            query = query.order_by(_H.start_time, _H.id).limit(STREAM_CHUNK)
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield _export_row(row._mapping)
            if len(rows) < STREAM_CHUNK:
                return
            last = rows[-1]._mapping
            after = (last["start_time"], last["id"])

    def export_history(
        self,
        out: IO[str],
        *,
        format: str = "jsonl",
        collector_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: ExecutionStatus | None = None,
    ) -> int:
        """Write stored runs to ``out`` as JSON lines or CSV, streaming; how many rows."""
        rows = self.iter_history(collector_type, since=since, until=until, status=status)
        return write_export(out, format, rows)

    # -- retention ---------------------------------------------------------------------

    def cleanup(
        self,
        *,
        runs_before: datetime | None,
        metrics_before: datetime | None,
        alerts_before: datetime | None,
        batch: int = CLEANUP_BATCH,
    ) -> dict[str, int]:
        """Delete old rows in batches of ``batch``, each its own short transaction.

        Runs by start time, metric points by timestamp, resolved alerts by
        resolution time (active alerts are never deleted). Returns the rows
        deleted per table.
        """
        counts = {"execution_history": 0, "performance_metrics": 0, "system_alerts": 0}
        points = performance_metrics.c
        plans: list[tuple[str, Any, Any, ColumnElement[bool]]] = []
        if runs_before is not None:
            plans.append(
                ("execution_history", execution_history, _H.id, _H.start_time < runs_before)
            )
        if metrics_before is not None:
            plans.append(
                (
                    "performance_metrics",
                    performance_metrics,
                    points.id,
                    points.timestamp < metrics_before,
                )
            )
        if alerts_before is not None:
            plans.append(
                (
                    "system_alerts",
                    system_alerts,
                    _A.id,
                    and_(_A.state == AlertState.RESOLVED.value, _A.resolved_at < alerts_before),
                )
            )
        for name, table, key, condition in plans:
            while True:
                # Delete by key from a bounded subquery: short transactions, short locks.
                chosen = select(key).where(condition).limit(batch).scalar_subquery()
                with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
                    deleted = conn.execute(delete(table).where(key.in_(chosen))).rowcount
                counts[name] += deleted
                if deleted < batch:
                    break
        return counts


@functools.lru_cache(maxsize=8)
def _sqlite_insert_runs(rows: int) -> str:
    """One INSERT of ``rows`` runs; a run already stored is skipped."""
    group = f"({', '.join('?' * len(_RUN_COLUMNS))})"
    return (
        f"INSERT INTO execution_history ({', '.join(_RUN_COLUMNS)}) "
        f"VALUES {', '.join([group] * rows)} ON CONFLICT (execution_id) DO NOTHING"
    )


def _sqlite_time(ns: int) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for ``utc_ns(ns)`` (naive UTC, microseconds)."""
    return (_NAIVE_EPOCH + timedelta(microseconds=ns // 1000)).isoformat(" ", "microseconds")


def _json_text(value: Any, empty: str) -> str:
    """What SQLAlchemy's JSON type stores for ``_clean_json(value)``."""
    if not value:
        return empty
    text = json.dumps(value)
    # json.dumps escapes NUL as \u0000 and writes NaN/Infinity bare: clean
    # only when there is one.
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        return json.dumps(_clean_json(value))
    return text


def _streak_update() -> Any:
    """Set ``consecutive_failures`` of collector ``:c`` from its stored runs."""
    ok = execution_history.alias("ok")
    last_success = (
        select(ok.c.start_time)
        .where(
            ok.c.collector_type == bindparam("c"),
            or_(*(ok.c.status == v for v in _OK_STATUSES)),
        )
        .order_by(ok.c.start_time.desc())
        .limit(1)
        .scalar_subquery()
    )
    failures = (
        select(func.count())
        .select_from(execution_history)
        .where(
            _H.collector_type == bindparam("c"),
            # No IN (...): its expanding parameters cannot be used with executemany.
            or_(*(_H.status == v for v in _ERROR_STATUSES)),
            _H.start_time > func.coalesce(last_success, literal(_EPOCH_UTC, UTCDateTime())),
        )
        .scalar_subquery()
    )
    return (
        update(collection_metadata)
        .where(_M.collector_type == bindparam("c"))
        .values(consecutive_failures=failures)
    )


_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _earliest(current: Any, new: Any) -> ColumnElement[Any]:
    return case(
        (current.is_(None), new), (new.is_(None), current), (new < current, new), else_=current
    )


def _latest(current: Any, new: Any) -> ColumnElement[Any]:
    return case(
        (current.is_(None), new), (new.is_(None), current), (new > current, new), else_=current
    )


def _record(row: Any) -> ExecutionRecord:
    m = row._mapping
    return make_record(
        m["collector_type"],
        m["execution_id"],
        ExecutionStatus(m["status"]),
        m["start_time"],
        m["end_time"],
        m["duration_seconds"],
        int(m["records_collected"]),
        tuple(m["errors"] or ()),
        tuple(m["warnings"] or ()),
        MappingProxyType(
            {k: tuple(v) if isinstance(v, list) else v for k, v in (m["metadata"] or {}).items()}
        ),
        m["error_type"],
        m["error_message"],
        m["trace_id"],
        m["span_id"],
        int(m["dropped_messages"] or 0),
    )


def _alert(row: Any) -> tuple[Alert, AlertLevel | None]:
    m = row._mapping
    notified = m["notified_level"]
    return (
        Alert(
            id=m["id"],
            level=AlertLevel(m["level"]),
            collector_type=m["collector_type"],
            rule=m["rule"],
            message=m["message"],
            timestamp=m["fired_at"],
            metadata=dict(m["metadata"] or {}),
            state=AlertState(m["state"]),
            fired_at=m["fired_at"],
            last_notified_at=m["last_notified_at"],
            acknowledged_at=m["acknowledged_at"],
            resolved_at=m["resolved_at"],
            suppressed=bool(m["suppressed"]),
            notifications=int(m["notifications"] or 0),
        ),
        AlertLevel(notified) if notified else None,
    )


def _export_row(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in EXPORT_COLUMNS:
        value = m[name]
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
