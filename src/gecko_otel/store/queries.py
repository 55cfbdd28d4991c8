"""Reads of the store: history, statistics, alerts, collectors, exports, retention.

All in SQL over indexed columns: statistics are counts and sums grouped by
status plus a GROUP BY over each run's duration bucket for percentiles (the
same 1 % sketch as in memory), never a scan of rows into Python. Exports
stream rows in chunks; retention deletes in short batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    Select,
    and_,
    case,
    cast,
    delete,
    func,
    select,
)

from gecko_otel._checks import INT64_MAX
from gecko_otel._history.memory import _STATUS_INDEX, Aggregate
from gecko_otel._values.alerts import Alert, AlertState
from gecko_otel._values.health import AlertLevel
from gecko_otel._values.records import (
    ExecutionRecord,
    ExecutionStatistics,
    ExecutionStatus,
    FinishedRun,
    to_ns,
)
from gecko_otel.store.engine import write_transaction
from gecko_otel.store.export import write_export
from gecko_otel.store.rows import (
    _A,
    _H,
    _M,
    _NOT_STARTED,
    _OK_STATUSES,
    CLEANUP_BATCH,
    STREAM_CHUNK,
    CollectorRow,
    WindowBucket,
    alert_from_row,
    export_row,
    record_from_row,
)
from gecko_otel.store.schema import (
    UTCDateTime,
    collection_metadata,
    execution_history,
    performance_metrics,
    system_alerts,
)

logger = logging.getLogger("gecko_otel.store")


class StoreQueries:
    """The read side of `Store` (see the module docs)."""

    engine: Engine

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
            return [record_from_row(row) for row in conn.execute(query)]

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
            for row in conn.execute(totals):
                _add_totals(aggregate, row)
            for key, count in conn.execute(buckets):
                aggregate.sketch[int(key)] = aggregate.sketch.get(int(key), 0) + count
        return aggregate.statistics(collector_type, window)

    def statistics_by_collector(self) -> dict[str, ExecutionStatistics]:
        """Statistics of every collector's stored runs, in two grouped queries."""
        totals = select(
            _H.collector_type,
            _H.status,
            func.count(),
            func.sum(_H.duration_seconds),
            func.count(_H.duration_seconds),
            func.sum(_H.records_collected),
            func.min(_H.start_time, type_=UTCDateTime()),
            func.max(_H.start_time, type_=UTCDateTime()),
        ).group_by(_H.collector_type, _H.status)
        buckets = (
            select(_H.collector_type, _H.duration_bucket, func.count())
            .where(_H.duration_bucket.is_not(None))
            .group_by(_H.collector_type, _H.duration_bucket)
        )
        aggregates: dict[str, Aggregate] = {}
        with self.engine.connect() as conn:
            for name, *row in conn.execute(totals):
                _add_totals(aggregates.setdefault(name, Aggregate()), row)
            for name, key, count in conn.execute(buckets):
                sketch = aggregates.setdefault(name, Aggregate()).sketch
                sketch[int(key)] = sketch.get(int(key), 0) + count
        return {name: a.statistics(name, None) for name, a in aggregates.items()}

    def newest_by_collector(self, limit: int) -> dict[str, list[ExecutionRecord]]:
        """The newest ``limit`` runs of every collector, newest first, in one query."""
        rank = (
            func.row_number()
            .over(partition_by=_H.collector_type, order_by=(_H.start_time.desc(), _H.id.desc()))
            .label("rank")
        )
        ranked = select(execution_history, rank).subquery()
        query = (
            select(ranked)
            .where(ranked.c.rank <= limit)
            .order_by(ranked.c.collector_type, ranked.c.rank)
        )
        out: dict[str, list[ExecutionRecord]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                record = record_from_row(row)
                out.setdefault(record.collector_type, []).append(record)
        return out

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
            return [alert_from_row(row) for row in conn.execute(query)]

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
        if self.engine.dialect.name == "postgresql":
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
                out[name] = [
                    FinishedRun.from_record(record_from_row(row)) for row in reversed(rows)
                ]
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
                yield export_row(row._mapping)
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
        on_batch: Callable[[str, int], None] | None = None,
    ) -> dict[str, int]:
        """Delete old rows in batches of ``batch``, each its own short transaction.

        Runs by start time, metric points by timestamp, resolved alerts by
        resolution time (active alerts are never deleted). Returns the rows
        deleted per table; ``on_batch(table, deleted)`` is called after each
        batch (a progress bar).
        """
        counts = {"execution_history": 0, "performance_metrics": 0, "system_alerts": 0}
        plans = _retention_plans(runs_before, metrics_before, alerts_before)
        for name, table, key, condition in plans:
            while True:
                # Delete by key from a bounded subquery: short transactions, short locks.
                chosen = select(key).where(condition).limit(batch).scalar_subquery()
                with write_transaction(self.engine) as conn:
                    deleted = conn.execute(delete(table).where(key.in_(chosen))).rowcount
                counts[name] += deleted
                if on_batch is not None:
                    on_batch(name, deleted)
                if deleted < batch:
                    break
        return counts

    def cleanup_counts(
        self,
        *,
        runs_before: datetime | None,
        metrics_before: datetime | None,
        alerts_before: datetime | None,
    ) -> dict[str, int]:
        """The rows `cleanup` would delete with these arguments, per table (a dry run)."""
        counts = {"execution_history": 0, "performance_metrics": 0, "system_alerts": 0}
        with self.engine.connect() as conn:
            for name, table, _, condition in _retention_plans(
                runs_before, metrics_before, alerts_before
            ):
                counts[name] = conn.execute(
                    select(func.count()).select_from(table).where(condition)
                ).scalar_one()
        return counts


def _retention_plans(
    runs_before: datetime | None, metrics_before: datetime | None, alerts_before: datetime | None
) -> list[tuple[str, Any, Any, ColumnElement[bool]]]:
    """(table name, table, key, condition) of the rows retention removes."""
    points = performance_metrics.c
    plans: list[tuple[str, Any, Any, ColumnElement[bool]]] = []
    if runs_before is not None:
        plans.append(("execution_history", execution_history, _H.id, _H.start_time < runs_before))
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
    return plans


def _add_totals(aggregate: Aggregate, row: Sequence[Any]) -> None:
    """Add one (status) group of a statistics query to ``aggregate``: the row holds
    status, count, duration sum and count, records, first and last start."""
    status, count, duration_sum, duration_count, records, first, last = row
    index = _STATUS_INDEX.get(ExecutionStatus(status))
    if index is None:  # pragma: no cover - every status has an index
        return
    aggregate.counts[index] += count
    aggregate.duration_sum += float(duration_sum or 0.0)
    aggregate.duration_count += duration_count
    aggregate.records = min(aggregate.records + int(records or 0), INT64_MAX)
    for moment in (first, last):
        if moment is None:
            continue
        ns = to_ns(moment)
        if aggregate.first is None or ns < aggregate.first:
            aggregate.first = ns
        if aggregate.last is None or ns > aggregate.last:
            aggregate.last = ns
