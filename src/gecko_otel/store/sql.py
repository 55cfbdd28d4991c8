"""``SQLStore``: the SQL backend of the storage contract (SQLite, PostgreSQL).

It owns everything persistence needs: the `Store`
(tables through one Engine), the background
`StoreWriter`, the restore of health, recent
history and active alerts on start, the sync of alert actions taken by other
processes, retention, and the fallback to this process's memory while the
database is unreachable. It is handed finished runs, alert changes and health
snapshots by the run pipeline like any other consumer, and only queues them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import IO, TYPE_CHECKING, Any, Final

from sqlalchemy.exc import DBAPIError

from gecko_otel._checks import seconds
from gecko_otel._config import MonitorConfig
from gecko_otel._guard import at_fork_in_child
from gecko_otel._health.window import BUCKETS
from gecko_otel._values.alerts import Alert, AlertState
from gecko_otel._values.health import AlertLevel
from gecko_otel.store.baselines import read_baselines, read_newer_baselines, write_baselines
from gecko_otel.store.silences import list_silences
from gecko_otel.store.store import Store
from gecko_otel.store.thresholds import overrides
from gecko_otel.store.writer import StoreWriter

if TYPE_CHECKING:
    from gecko_otel._values.records import (
        ExecutionRecord,
        ExecutionStatistics,
        ExecutionStatus,
        FinishedRun,
    )
    from gecko_otel.store.memory import MemoryStore
    from gecko_otel.store.metrics import StoreMetricExporter
    from gecko_otel.typing import HealthSnapshot, PipelineHandle

logger = logging.getLogger("gecko_otel.store")

#: Runs per collector put back in memory from the store on start.
RESTORED_RUNS: Final = 100
#: Seconds between warnings that queries fall back to memory.
FALLBACK_LOG_EVERY: Final = 60.0


class SQLStore:
    """The storage contract (`RunStore`) over SQL.

    Args:
        store: The tables, from `open_store`.
        memory: This process's in-memory history, answered from while the
            database is unreachable.
        config: Queue sizes, intervals, retention and timeouts.
        ready: Whether the schema was checked at start (False: the database
            was unreachable; it is checked again when it answers).
        metric_exporter: The metric exporter to bind, so ``performance_metrics``
            is filled; None when the MeterProvider was not made by ``setup()``.
        before_exit: Called at interpreter exit before the writer's last flush.

    Threading: the consumer methods only queue (O(1)); queries wait for the
    writer (bounded by ``store_read_timeout``) and then read SQL.
    """

    def __init__(
        self,
        store: Store,
        memory: MemoryStore,
        config: MonitorConfig,
        *,
        ready: bool = True,
        metric_exporter: StoreMetricExporter | None = None,
        before_exit: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._memory = memory
        self._config = config
        self._ready = ready
        self._writer = StoreWriter(
            store,
            queue_size=config.store_queue_size,
            batch_size=config.store_batch_size,
            interval=seconds(config.store_flush_interval),
            available=ready,  # reads answer from memory until a write succeeds
            before_exit=self._before_exit,
        )
        self._before_exit_hook = before_exit
        self._metric_exporter = metric_exporter
        self._pipeline: PipelineHandle | None = None
        self._closed = False
        self._last_fallback_log = -FALLBACK_LOG_EVERY
        #: Who writes this process's baselines, and what was read and written.
        self._instance = ""
        self._baselines_read: datetime | None = None
        self._baselines_written: dict[str, int] = {}
        self._baselines_seen: dict[str, datetime] = {}
        self._new_instance()
        at_fork_in_child(self, "_new_instance")  # each forked worker writes its own rows

    @property
    def store(self) -> Store:
        """The tables this backend reads and writes."""
        return self._store

    @property
    def writer(self) -> StoreWriter:
        """The background writer."""
        return self._writer

    # -- lifecycle ---------------------------------------------------------------

    def start(self, pipeline: PipelineHandle) -> None:
        """Restore from the database, then start retention, alert sync and metric points."""
        self._pipeline = pipeline
        store, writer, config = self._store, self._writer, self._config
        if self._ready:
            try:
                self._restore(pipeline)
            except DBAPIError as exc:
                logger.warning(
                    "gecko_otel: could not rebuild health and alerts from %s (%s); starting empty",
                    store.describe(),
                    _first_line(exc),
                )
        writer.maintain("retention", seconds(config.retention_interval), self._retention)
        writer.maintain("alert sync", seconds(config.watchdog_interval), self._sync_alerts)
        writer.maintain(
            "baseline sync", seconds(config.watchdog_interval), self._sync_baselines, at_stop=True
        )
        if self._metric_exporter is not None:
            self._metric_exporter.bind(store, writer)
        else:
            logger.info(
                "gecko_otel: metric points are not stored (performance_metrics): the "
                "MeterProvider was not created by setup(); see store_metric_reader()"
            )

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything queued is written."""
        return self._writer.flush(timeout)

    def shutdown(self, timeout: float) -> None:
        """Write what is queued (bounded), stop the writer, close the store."""
        self._closed = True
        # A writer left behind in a write closes the store when it is done with it.
        self._writer.shutdown(timeout, then=self._store.close)
        if self._metric_exporter is not None:
            self._metric_exporter.shutdown()  # later collections have nowhere to go

    def _before_exit(self) -> None:
        """At interpreter exit, before the writer's last flush: let the Monitor queue
        what it holds, then stop taking metric points (providers shut down after us
        would otherwise hand their final collection to a closed writer)."""
        if self._before_exit_hook is not None:
            self._before_exit_hook()
        if self._metric_exporter is not None:
            self._metric_exporter.shutdown()

    # -- consumer (any thread: O(1), queue only) -----------------------------------------

    def add_run(self, run: FinishedRun) -> None:
        """Queue the run."""
        self._writer.put_run(run)

    def alert_changed(self, alert: Alert, notified_level: AlertLevel) -> None:
        """Queue the alert's row."""
        self._writer.put_alert(self._store.alert_row(alert, notified_level))

    def health_changed(self, health: HealthSnapshot) -> None:
        """Queue the collectors' new health status and score."""
        self._writer.put_health(health)

    # -- queries -------------------------------------------------------------------------

    def history(
        self,
        collector_type: str | None,
        *,
        limit: int | None,
        status: ExecutionStatus | None,
        since: datetime | None,
    ) -> list[ExecutionRecord]:
        """Runs of every process sharing the database, newest first."""
        if self._synced():
            try:
                return self._store.history(collector_type, limit=limit, status=status, since=since)
            except DBAPIError as exc:
                self._unavailable(exc)
        return self._memory.history(collector_type, limit=limit, status=status, since=since)

    def statistics(
        self, collector_type: str | None, *, window: float | None
    ) -> ExecutionStatistics:
        """Figures computed in SQL over every stored run."""
        if self._synced():
            try:
                return self._store.statistics(collector_type, window=window)
            except DBAPIError as exc:
                self._unavailable(exc)
        return self._memory.statistics(collector_type, window=window)

    def collector_types(self) -> list[str]:
        """Collectors stored by any process, and those this process holds."""
        names = set(self._memory.collector_types())
        if self._synced():
            try:
                names.update(self._store.collector_types())
            except DBAPIError as exc:
                self._unavailable(exc)
        return sorted(names)

    def by_collector(
        self, limit: int
    ) -> dict[str, tuple[ExecutionStatistics, list[ExecutionRecord]]]:
        """Every stored collector's statistics and newest runs: three queries in all."""
        if self._synced():
            try:
                statistics = self._store.statistics_by_collector()
                newest = self._store.newest_by_collector(limit)
            except DBAPIError as exc:
                self._unavailable(exc)
            else:
                names = sorted(statistics.keys() | set(self._memory.collector_types()))
                memory = self._memory.by_collector(limit)
                return {
                    name: (statistics[name], newest.get(name, []))
                    if name in statistics
                    else memory[name]
                    for name in names
                }
        return self._memory.by_collector(limit)

    def alerts(
        self, *, level: AlertLevel | None, collector_type: str | None, active_only: bool
    ) -> list[Alert]:
        """Stored alerts of every process sharing the database."""
        if not self._synced():
            return []
        try:
            stored = self._store.alerts(
                level=level, collector_type=collector_type, active_only=active_only
            )
        except DBAPIError as exc:
            self._unavailable(exc)
            return []
        return [alert for alert, _ in stored]

    def set_alert_state(self, alert_id: str, state: AlertState, at: datetime) -> bool:
        """Acknowledge or resolve another process's alert in the database."""
        if not self._synced():
            return False
        try:
            return self._store.set_alert_state(alert_id, state, at)
        except DBAPIError as exc:
            self._unavailable(exc)
            return False

    def cleanup(self, runs_before: datetime, alerts_before: datetime) -> dict[str, int]:
        """Delete old runs, metric points and resolved alerts (in short batches),
        after writing what is queued (bounded by ``store_read_timeout``).

        Raises:
            sqlalchemy.exc.OperationalError: The database is unreachable.
        """
        self._synced()
        self._memory.cleanup(runs_before, alerts_before)
        return self._store.cleanup(
            runs_before=runs_before, metrics_before=runs_before, alerts_before=alerts_before
        )

    def export_history(
        self,
        out: IO[str],
        *,
        format: str,
        collector_type: str | None,
        since: datetime | None,
        until: datetime | None,
        status: ExecutionStatus | None,
    ) -> int:
        """Stream stored runs (after writing what is queued, bounded).

        Raises:
            sqlalchemy.exc.OperationalError: The database is unreachable.
        """
        self._synced()
        return self._store.export_history(
            out,
            format=format,
            collector_type=collector_type,
            since=since,
            until=until,
            status=status,
        )

    def export_state(self) -> dict[str, Any]:
        """The ``store`` section of ``Monitor.export()``."""
        store, writer = self._store, self._writer
        state: dict[str, Any] = {
            "url": store.describe(),
            "backend": store.backend,
            "service_name": store.service_name,
            "service_instance_id": store.service_instance_id,
            "file_recreated": store.replaced,
            **writer.status(),
            **writer.counts(),
        }
        if self._synced():
            try:
                state["collection_metadata"] = [row.to_dict() for row in store.collectors()]
            except DBAPIError as exc:
                self._unavailable(exc)
        return {"store": state}

    def counts(self) -> dict[str, int]:
        """Drops in memory and in the writer, by kind."""
        return {**self._memory.counts(), **self._writer.counts()}

    # -- internals ---------------------------------------------------------------------

    def _synced(self) -> bool:
        """Whether the database holds every run queued so far (else answer from memory)."""
        if self._pipeline is not None:
            self._pipeline.drain()
        writer = self._writer
        if self._closed:
            return False
        if writer.available and writer.flush(seconds(self._config.store_read_timeout)):
            return True
        self._unavailable("the writer could not store pending runs in time")
        return False

    def _unavailable(self, why: object) -> None:
        now = time.monotonic()
        if now - self._last_fallback_log < FALLBACK_LOG_EVERY:
            return
        self._last_fallback_log = now
        logger.warning(
            "gecko_otel: store %s unavailable (%s); queries answer from this process's "
            "memory until it is back (logged once a minute)",
            self._store.describe(),
            _first_line(why) if str(why) else type(why).__name__,
        )

    def _restore(self, pipeline: PipelineHandle) -> None:
        """Health, recent history and active alerts of this service, from the store."""
        store = self._store
        window = seconds(self._config.success_rate_window)
        width = window / BUCKETS
        # First, so restored collectors start with the stored thresholds and baselines.
        pipeline.apply_thresholds(overrides(store.engine))
        pipeline.adopt_baselines(read_baselines(store.engine), blend=False)
        self._baselines_read = datetime.now(timezone.utc)
        with pipeline.lock:
            now = pipeline.now()
            service = store.service_name
            buckets: dict[str, list[tuple[int, int, int, float, int, int]]] = {}
            for b in store.window_buckets(
                datetime.fromtimestamp(now - window, timezone.utc), width, service_name=service
            ):
                buckets.setdefault(b.collector_type, []).append(
                    (b.bucket, b.total, b.ok, b.duration_sum, b.duration_count, b.records)
                )
            # This service's collectors: the rows it wrote last, and those it
            # ran within the window even if another service wrote last.
            rows = store.collectors(service_name=service, names=buckets)
            per_collector = min(self._config.max_history_per_collector, RESTORED_RUNS)
            latest = store.latest_runs([r.collector_type for r in rows], per_collector, service)
            restored = [
                row.collector_type
                for row in rows
                if pipeline.restore_collector(
                    row.collector_type,
                    now=now,
                    buckets=buckets.get(row.collector_type, ()),
                    first_seen=_timestamp(row.first_run),
                    last_success=_timestamp(row.last_success),
                    last_failure=_timestamp(row.last_failure),
                    consecutive_failures=row.consecutive_failures,
                    total_executions=row.total_executions,
                    runs=latest.get(row.collector_type, []),
                )
            ]
            alerts, superseded = pipeline.restore_alerts(
                store.alerts(active_only=True, service_name=service)
            )
        self._apply_silences(pipeline)  # before the first run can notify
        for alert_id in superseded:
            # Two replicas fired the same rule: the older alert must not stay
            # active in the store for ever once the survivor resolves.
            store.set_alert_state(
                alert_id, AlertState.RESOLVED, datetime.fromtimestamp(now, timezone.utc)
            )
        if restored or alerts:
            logger.info(
                "gecko_otel: restored %d collectors and %d active alerts from %s",
                len(restored),
                alerts,
                store.describe(),
            )

    def _apply_silences(self, pipeline: PipelineHandle) -> None:
        """Silence this process's alerts as the store's active silences say."""
        now = datetime.fromtimestamp(pipeline.now(), timezone.utc)
        pipeline.apply_silences(
            (s.collector_type, s.rule, s.ends_at.timestamp())
            for s in list_silences(self._store.engine, now)
        )

    def _sync_alerts(self) -> None:
        """Apply acknowledgements, resolutions, silences and thresholds made in the store.

        Runs on the writer thread every ``watchdog_interval``: an alert this
        process owns that another process (or the command line) acknowledged
        or resolved in the database is acknowledged or resolved here too, so
        repeats stop and handlers hear of the resolution; the store's active
        silences replace those applied on the previous sync, so a new one
        holds notifications back and an ended one lets them through; so do
        the stored thresholds, re-evaluating the collectors they change.
        """
        store, writer, pipeline = self._store, self._writer, self._pipeline
        if pipeline is None:
            return
        if not writer.available and not writer.pending():
            # Unreachable at start and nothing written since: is it back?
            store.ensure_schema()
            writer.available = True
        local = {alert.id: alert for alert in pipeline.active_alerts()}
        for alert_id, (state, level) in store.alert_states(local).items():
            mine = local[alert_id]
            if state is AlertState.RESOLVED:
                pipeline.resolve(alert_id)
            elif (
                state is AlertState.ACKNOWLEDGED
                and mine.state is AlertState.FIRING
                # An escalation not yet written is not what was acknowledged.
                and level is mine.level
            ):
                pipeline.acknowledge(alert_id)
        self._apply_silences(pipeline)
        pipeline.apply_thresholds(overrides(store.engine))

    def _sync_baselines(self) -> None:
        """Meet the baselines other processes stored since the last sync, then store ours.

        On the writer thread every ``watchdog_interval``, and once more at shutdown.
        """
        pipeline = self._pipeline
        if pipeline is None or not self._writer.available:
            return
        engine, now = self._store.engine, datetime.now(timezone.utc)
        if self._baselines_read is None:
            # Not restored at start (the database was down): take the stored
            # baselines first, so a fresh one never overwrites what was learned.
            pipeline.adopt_baselines(read_baselines(engine), blend=False)
            self._baselines_read = now
        # A row is stamped before its transaction commits: read back a margin.
        margin = timedelta(seconds=max(5.0, 2 * seconds(self._config.watchdog_interval)))
        since = self._baselines_read - margin
        others = read_newer_baselines(
            engine, self._baselines_seen, since=since, not_by=self._instance
        )
        written = self._baselines_written
        for name in pipeline.adopt_baselines(others, blend=True) if others else ():
            written.pop(name, None)  # moved: the others hear of it
        self._baselines_read = now
        after = dict(written)
        learned = pipeline.baselines(after)
        if learned:
            # As a batch does: a SQLite file deleted or replaced is noticed
            # (and made again) before anything is written into it.
            self._store.ensure_schema()
            write_baselines(engine, learned, by=self._instance, now=now)
        self._baselines_written = after  # only once stored: a failed write is retried

    def _new_instance(self) -> None:
        """A name of its own for this process's baseline rows (and, after a fork, anew)."""
        name = self._store.service_name or "gecko-otel"
        self._instance = f"{name}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._baselines_written = {}
        self._baselines_seen = {}

    def _retention(self) -> None:
        """The automatic cleanup, run on the writer thread every ``retention_interval``."""
        config = self._config
        now = datetime.now(timezone.utc)

        def cutoff(keep: float | timedelta | None) -> datetime | None:
            return None if keep is None else now - timedelta(seconds=seconds(keep))

        counts = self._store.cleanup(
            runs_before=cutoff(config.retention_runs),
            metrics_before=cutoff(config.retention_metrics),
            alerts_before=cutoff(config.retention_alerts),
        )
        if any(counts.values()):
            logger.info("gecko_otel: retention removed %s from %s", counts, self._store.describe())


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _first_line(why: object) -> str:
    return str(why).splitlines()[0][:200] if str(why) else ""
