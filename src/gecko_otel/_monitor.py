"""``Monitor``: the one object that owns a process's collection monitoring.

It wires the pieces together (instrumentation, history, the history span
processor, the observable metrics) and answers every question about runs.
:func:`gecko_otel.setup` builds one from the environment and installs it
globally; tests and embedders can build one directly from their own providers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any, Final

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from gecko_otel import _state
from gecko_otel._alerts.values import Alert, AlertLevel, AlertState
from gecko_otel._capture.instruments import Instrumentation, new_execution_id
from gecko_otel._capture.observables import observables_for
from gecko_otel._capture.run import Run
from gecko_otel._capture.span_processor import HistorySpanProcessor
from gecko_otel._config import MonitorConfig, check_seconds, seconds
from gecko_otel._guard import internal_error_count, report_internal_error
from gecko_otel._health.expectations import Expectation, make_expectation
from gecko_otel._health.rules import BUCKETS
from gecko_otel._health.values import CollectorHealth, SystemHealth
from gecko_otel._history.memory import (
    History,
    _check_limit,
    _check_since,
    _check_status,
    _check_window,
)
from gecko_otel._history.records import (
    ExecutionRecord,
    ExecutionStatistics,
    ExecutionStatus,
    FinishedRun,
    to_ns,
)
from gecko_otel._pipeline.alerting import Alerting
from gecko_otel._pipeline.ingest import RunIngest
from gecko_otel.errors import ConfigError
from gecko_otel.typing import AlertHandler

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gecko_otel.store.metrics import StoreMetricExporter
    from gecko_otel.store.store import Store
    from gecko_otel.store.writer import StoreWriter

logger = logging.getLogger("gecko_otel.monitor")

#: Runs per collector put back in memory from the store on start.
RESTORED_RUNS: Final = 100
#: Seconds shutdown() waits for the store writer.
STORE_SHUTDOWN_TIMEOUT: Final = 10.0
#: Seconds between warnings that queries fall back to memory.
FALLBACK_LOG_EVERY: Final = 60.0
_INSTRUMENT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")


class _NoStore(Exception):
    """Stands for the database error type while no store is open."""


def _weak_method(obj: object, name: str) -> Callable[[], None]:
    """``obj.<name>()`` without keeping ``obj`` alive (a no-op once it is gone)."""
    ref = weakref.ref(obj)

    def call() -> None:
        target = ref()
        if target is not None:
            getattr(target, name)()

    return call


def _open_overlap(runs: list[FinishedRun]) -> float | None:
    """When the last skip happened, if no run started after it (unix seconds), else None."""
    skipped = [r.start_ns for r in runs if r.status is ExecutionStatus.SKIPPED]
    if not skipped:
        return None
    last = max(skipped)
    if any(
        r.start_ns > last and r.status not in (ExecutionStatus.MISSED, ExecutionStatus.SKIPPED)
        for r in runs
    ):
        return None
    return last / 1e9


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


class Monitor:
    """Execution history and statistics of collection runs, fed by their spans.

    Args:
        tracer_provider: The SDK ``TracerProvider`` whose spans are watched; the
            history processor is added to it. Not shut down by the Monitor
            unless listed in ``owned_providers``.
        meter_provider: Where the duration histogram and the observable
            instruments are created.
        config: Limits, thresholds and behaviour; ``MonitorConfig()`` when omitted.
        alert_handlers: Alert handlers to start with (any callable taking an
            :class:`~gecko_otel.Alert`).
        owned_providers: Providers the Monitor created and must shut down.
        clock: Unix time in seconds for health and alerts (``time.time`` by
            default); tests pass a fake clock to move time without sleeping.
        watchdog: Run the watchdog thread that evaluates time-based rules every
            ``watchdog_interval``; with False, call :meth:`evaluate` yourself.
        database: The store: a URL (``sqlite:///path.db``,
            ``postgresql+psycopg://...``) or a SQLAlchemy ``Engine`` you own
            (never disposed by the Monitor). ``config.database_url`` when
            omitted; memory only when both are None. The schema is migrated
            and health and active alerts are rebuilt from it on start.
        metric_exporter: A :class:`~gecko_otel.store.metrics.StoreMetricExporter`
            on a reader of ``meter_provider`` (see
            :func:`~gecko_otel.store.metrics.store_metric_reader`); the Monitor
            binds it to the store so ``performance_metrics`` is filled.
            ``setup()`` does this for the MeterProvider it creates.

    Threading: every method is safe from any thread. Without a store, query
    methods take per-collector locks briefly and do no I/O; with one,
    ``history()``, ``statistics()``, ``alerts()`` and ``export()`` query the
    database (never on a collector's thread: runs only enqueue).

    Raises:
        ConfigError: The database URL is unusable, its driver is missing, or
            the database was written by a newer gecko-otel.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        config: MonitorConfig | None = None,
        alert_handlers: Iterable[AlertHandler] = (),
        owned_providers: Iterable[Any] = (),
        clock: Callable[[], float] | None = None,
        watchdog: bool = True,
        database: str | Engine | None = None,
        metric_exporter: StoreMetricExporter | None = None,
    ) -> None:
        self.config = config if config is not None else MonitorConfig()
        self._db_error: type[Exception] = _NoStore
        if database is None:
            database = self.config.database_url
        # The store is opened (and its schema checked) first, so a refused
        # database leaves nothing running behind the ConfigError.
        opened = self._open_store(database, tracer_provider) if database is not None else None
        self.instrumentation = Instrumentation(tracer_provider, meter_provider, self.config)
        self._history = History(self.config)
        self._alerting = Alerting(
            self.config,
            self._history,
            clock=clock,
            handlers=alert_handlers,
            watchdog=watchdog,
        )
        self._ingest = RunIngest(self._history, self._alerting, self.config)
        self._alerting.before_evaluation = self._ingest.drain
        self._processor = HistorySpanProcessor(self.instrumentation, self._on_record)
        self.instrumentation.discard_run = self._discard_run
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._owned = list(owned_providers)
        self._shutdown = False
        self._lock = threading.Lock()
        self._started = datetime.now(timezone.utc)
        add = getattr(tracer_provider, "add_span_processor", None)
        if add is None:
            logger.warning(
                "gecko_otel: %s is not an OpenTelemetry SDK TracerProvider; runs get spans "
                "but no history. Pass an opentelemetry.sdk.trace.TracerProvider.",
                type(tracer_provider).__name__,
            )
        else:
            add(self._processor)
        # Observable instruments are per MeterProvider; this Monitor serves
        # them from now on (see observables.py).
        self._observables = observables_for(meter_provider, self.instrumentation.meter)
        self._observables.monitor = self
        self._custom_metrics: dict[str, Any] = {}
        self._last_fallback_log = -FALLBACK_LOG_EVERY
        self._store: Store | None = None
        self._writer: StoreWriter | None = None
        self._metric_exporter: StoreMetricExporter | None = None
        if opened is not None:
            self._start_store(*opened, metric_exporter)

    def _open_store(
        self, database: str | Engine, tracer_provider: TracerProvider
    ) -> tuple[Store, bool]:
        """The Store, and whether its schema is current; before anything else starts.

        Raises:
            ConfigError: As the class documents; nothing is left running.
        """
        from sqlalchemy import Engine  # noqa: PLC0415 - SQLAlchemy loads only with a store
        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

        from gecko_otel.store.engine import configure_sqlite, create_store_engine  # noqa: PLC0415
        from gecko_otel.store.store import Store  # noqa: PLC0415
        from gecko_otel.store.writer import is_transient  # noqa: PLC0415

        self._db_error = DBAPIError
        if isinstance(database, Engine):
            engine, owned = database, False
        else:
            engine, owned = create_store_engine(database), True
        resource = getattr(tracer_provider, "resource", None)
        attributes = getattr(resource, "attributes", None) or {}
        try:
            store = Store(
                engine,
                service_name=str(attributes.get("service.name") or "unknown_service"),
                service_instance_id=(
                    str(attributes["service.instance.id"])
                    if attributes.get("service.instance.id")
                    else None
                ),
                owns_engine=owned,
            )
            configure_sqlite(engine)
            store.ensure_schema()
        except DBAPIError as exc:
            if not is_transient(exc):
                store.close()
                raise
            logger.warning(
                "gecko_otel: store %s unreachable at start (%s); runs are kept in the "
                "queue and written when it is back, but health and alerts start empty",
                store.describe(),
                str(exc).splitlines()[0][:200],
            )
            return store, False
        except Exception:
            if owned:
                engine.dispose()
            raise
        return store, True

    def _start_store(
        self, store: Store, ready: bool, metric_exporter: StoreMetricExporter | None
    ) -> None:
        """The writer, the restore, and the hooks that feed the store."""
        from gecko_otel.store.writer import StoreWriter  # noqa: PLC0415

        config = self.config
        writer = StoreWriter(
            store,
            queue_size=config.store_queue_size,
            batch_size=config.store_batch_size,
            interval=seconds(config.store_flush_interval),
            health_of=self._stored_health,
        )
        writer.available = ready  # reads answer from memory until a write succeeds
        self._store, self._writer = store, writer
        if ready:
            try:
                self._restore()
            except self._db_error as exc:
                logger.warning(
                    "gecko_otel: could not rebuild health and alerts from %s (%s); starting empty",
                    store.describe(),
                    str(exc).splitlines()[0][:200],
                )
        writer.maintain("retention", seconds(config.retention_interval), self._retention)
        writer.maintain("alert sync", seconds(config.watchdog_interval), self._sync_alerts)
        self._metric_exporter = metric_exporter
        writer.before_exit = _weak_method(self, "_before_store_exit")
        if metric_exporter is not None:
            metric_exporter.bind(store, writer)
        else:
            logger.info(
                "gecko_otel: metric points are not stored (performance_metrics): the "
                "MeterProvider was not created by setup(); see store_metric_reader()"
            )
        self._alerting.engine.on_change = self._alert_changed

    def _before_store_exit(self) -> None:
        """At interpreter exit, before the writer's last flush: collect the last metric
        points into it, then stop taking more (providers shut down after us would
        otherwise hand their final collection to a closed writer)."""
        if not self._shutdown:
            self._flush(5_000, store=False)
        if self._metric_exporter is not None:
            self._metric_exporter.shutdown()

    def _alert_changed(self, alert: Alert, notified_level: AlertLevel) -> None:
        store, writer = self._store, self._writer
        if store is not None and writer is not None:
            writer.put_alert(store.alert_row(alert, notified_level))

    def _stored_health(self, collector_type: str) -> tuple[str | None, float | None]:
        health = self._alerting.health(collector_type).get(collector_type)
        if health is None:
            return None, None
        return health.status.value, health.health_score

    def _restore(self) -> None:
        """Health, recent history and active alerts of this service, from the store."""
        store = self._store
        assert store is not None
        alerting = self._alerting
        evaluator = alerting.evaluator
        window = seconds(self.config.success_rate_window)
        width = window / BUCKETS
        with alerting.lock:
            now = alerting.now()
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
            per_collector = min(self.config.max_history_per_collector, RESTORED_RUNS)
            latest = store.latest_runs([r.collector_type for r in rows], per_collector, service)
            restored = []
            for row in rows:
                runs = latest.get(row.collector_type, [])
                if evaluator.restore(
                    row.collector_type,
                    now=now,
                    buckets=buckets.get(row.collector_type, ()),
                    first_seen=_timestamp(row.first_run),
                    last_success=_timestamp(row.last_success),
                    last_failure=_timestamp(row.last_failure),
                    consecutive_failures=row.consecutive_failures,
                    total_executions=row.total_executions,
                    skipped_at=_open_overlap(runs),
                ):
                    restored.append(row.collector_type)
                    self._history.restore(runs)
            alerts, superseded = alerting.engine.restore(
                store.alerts(active_only=True, service_name=service)
            )
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

    def _on_record(self, record: FinishedRun) -> None:
        # On the thread that ended the run: O(1) amortised, no I/O.
        self._ingest.add(record)
        writer = self._writer
        if writer is not None:
            writer.put_run(record)

    def _synced_store(self) -> Store | None:
        """The store, once it holds every run this process queued; None to answer from memory."""
        self._ingest.drain()
        store, writer = self._store, self._writer
        if store is None or writer is None or self._shutdown:
            return None
        if writer.available and writer.flush(seconds(self.config.store_read_timeout)):
            return store
        self._store_unavailable("the writer could not store pending runs in time")
        return None

    def _store_unavailable(self, why: object) -> None:
        now = time.monotonic()
        if now - self._last_fallback_log < FALLBACK_LOG_EVERY:
            return
        self._last_fallback_log = now
        logger.warning(
            "gecko_otel: store %s unavailable (%s); queries answer from this process's "
            "memory until it is back (logged once a minute)",
            self._store.describe() if self._store is not None else "?",
            str(why).splitlines()[0][:200] if str(why) else type(why).__name__,
        )

    # -- queries -------------------------------------------------------------

    def history(
        self,
        collector_type: str | None = None,
        *,
        limit: int | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
    ) -> list[ExecutionRecord]:
        """Finished runs, newest first.

        Args:
            collector_type: One collector, or ``None`` for all.
            limit: At most this many records.
            status: Only runs with this status (an ``ExecutionStatus`` or its value).
            since: Only runs started at or after this aware datetime.

        With a store, the runs of every process sharing the database.

        Raises:
            ConfigError: An argument is invalid (the message says which).
        """
        checked = (_check_limit(limit), _check_status(status), _check_since(since))
        store = self._synced_store()
        if store is not None:
            try:
                return store.history(
                    collector_type, limit=checked[0], status=checked[1], since=checked[2]
                )
            except self._db_error as exc:
                self._store_unavailable(exc)
        return self._history.records(collector_type, limit=limit, status=status, since=since)

    def statistics(
        self,
        collector_type: str | None = None,
        *,
        window: timedelta | float | None = None,
    ) -> ExecutionStatistics:
        """Aggregate figures for one collector or all of them.

        Without ``window`` the figures cover every run since the Monitor
        started (running aggregates: no history scan). With ``window`` (a
        ``timedelta`` or seconds) they cover the runs started within it that
        are still held in memory (at most ``max_history_per_collector`` per
        collector).

        With a store, the figures are computed in SQL over every stored run
        (of every process sharing the database), within ``window`` if given.
        """
        window_seconds = _check_window(window)
        store = self._synced_store()
        if store is not None:
            try:
                return store.statistics(collector_type, window=window_seconds)
            except self._db_error as exc:
                self._store_unavailable(exc)
        return self._history.statistics(collector_type, window=window)

    def cleanup(self, older_than: timedelta | float) -> dict[str, int]:
        """Forget runs started, and alerts resolved, more than ``older_than`` ago.

        Active alerts, health and the running statistics are kept. Runs are
        aged by their start time (wall clock, as on their spans), alerts by
        when they resolved (the Monitor's clock). Returns how many were
        removed: ``{"execution_history": n, "system_alerts": m}`` from
        memory. With a store, memory is cleaned the same way and the rows
        deleted from the store are returned instead, metric points
        (``{"execution_history", "performance_metrics", "system_alerts"}``);
        it is cleaned in batches of a few thousand rows, each a short
        transaction.

        Raises:
            ConfigError: ``older_than`` is not a positive duration.
            sqlalchemy.exc.OperationalError: The store is unreachable.
        """
        age = check_seconds("older_than", older_than)
        self._ingest.drain()
        memory = {
            "execution_history": self._history.cleanup(
                datetime.now(timezone.utc) - timedelta(seconds=age)
            ),
            "system_alerts": self._alerting.engine.forget_resolved(self._alerting.now() - age),
        }
        store = self._store
        if store is None:
            return memory
        before = datetime.now(timezone.utc) - timedelta(seconds=age)
        return store.cleanup(runs_before=before, metrics_before=before, alerts_before=before)

    def _sync_alerts(self) -> None:
        """Apply acknowledgements and resolutions made in the store by others.

        Runs on the writer thread every ``watchdog_interval``: an alert this
        Monitor owns that another process (or the command line) acknowledged
        or resolved in the database is acknowledged or resolved here too, so
        repeats stop and handlers hear of the resolution.
        """
        store, writer = self._store, self._writer
        alerting = self._alerting
        if store is None or writer is None:
            return
        if not writer.available and not writer.pending():
            # Unreachable at start and nothing written since: is it back?
            store.ensure_schema()
            writer.available = True
        local = {
            alert.id: alert
            for alert in alerting.alerts(level=None, collector_type=None, active_only=True)
        }
        for alert_id, (state, level) in store.alert_states(local).items():
            mine = local[alert_id]
            if state is AlertState.RESOLVED:
                alerting.resolve(alert_id)
            elif (
                state is AlertState.ACKNOWLEDGED
                and mine.state is AlertState.FIRING
                # An escalation not yet written is not what was acknowledged.
                and level is mine.level
            ):
                alerting.acknowledge(alert_id)

    def _retention(self) -> None:
        """The automatic cleanup, run by the store writer every ``retention_interval``."""
        store, config = self._store, self.config
        if store is None:
            return
        now = datetime.now(timezone.utc)

        def cutoff(keep: float | timedelta | None) -> datetime | None:
            return None if keep is None else now - timedelta(seconds=seconds(keep))

        counts = store.cleanup(
            runs_before=cutoff(config.retention_runs),
            metrics_before=cutoff(config.retention_metrics),
            alerts_before=cutoff(config.retention_alerts),
        )
        if any(counts.values()):
            logger.info("gecko_otel: retention removed %s from %s", counts, store.describe())

    def collector_types(self) -> list[str]:
        """Collectors with at least one finished run, sorted (from the store too, if any)."""
        store = self._synced_store()
        names = set(self._history.collector_types())
        if store is not None:
            try:
                names.update(store.collector_types())
            except self._db_error as exc:
                self._store_unavailable(exc)
        return sorted(names)

    def expect(
        self,
        collector_type: str,
        *,
        every: timedelta | float | None = None,
        cron: str | None = None,
        grace: timedelta | float | None = None,
        max_runtime: timedelta | float | None = None,
        timezone: tzinfo | None = None,
        first_due: datetime | None = None,
    ) -> None:
        """Declare when the collector should run (and for how long at most).

        From now on the watchdog raises ``missed_run`` (level error) when no
        run has started by a due time plus ``grace`` (a dead man's switch: it
        works even if the scheduler died), and ``runtime_exceeded``
        (critical) while a run goes on past ``max_runtime``. Both resolve
        on their own: the next run starts, the long run ends. Declaring again
        replaces the expectation.

        Args:
            collector_type: The collector.
            every: Interval between starts (timedelta or seconds).
            cron: Cron expression for the starts, e.g. ``"*/5 * * * *"``
                (needs the ``cron`` extra or APScheduler).
            grace: How late a start may be (default 60 s).
            max_runtime: How long a run may take, or None.
            timezone: Time zone of ``cron`` (UTC by default).
            first_due: When the first run is due (e.g. a scheduler's next run
                time); by default one interval (or the next cron time) from now.

        Raises:
            ConfigError: Both or neither of every/cron (without max_runtime),
                a non-positive duration, an invalid cron expression or time
                zone, or a naive ``first_due``.
        """
        if not isinstance(collector_type, str) or not collector_type.strip():
            raise ConfigError(f"collector_type must be a non-empty string, got {collector_type!r}")
        expectation = make_expectation(
            every=every, cron=cron, grace=grace, max_runtime=max_runtime, tz=timezone
        )
        if first_due is not None and (
            not isinstance(first_due, datetime) or first_due.tzinfo is None
        ):
            raise ConfigError(f"first_due must be a timezone-aware datetime, got {first_due!r}")
        self._arm(
            collector_type,
            expectation,
            timezone,
            first_due.timestamp() if first_due is not None else None,
        )

    def unexpect(self, collector_type: str) -> bool:
        """Withdraw the collector's expectation; its schedule alerts resolve.

        Returns False if it had none.
        """
        removed = self._alerting.schedules.remove(collector_type)
        if removed:
            self._alerting.evaluate_one(collector_type)
        return removed

    def expectation(self, collector_type: str) -> Expectation | None:
        """The collector's declared expectation, if it has one."""
        return self._alerting.schedules.expectation(collector_type)

    def _arm(
        self,
        collector_type: str,
        expectation: Expectation,
        tz: tzinfo | None,
        first_due: float | None = None,
    ) -> None:
        if not self.instrumentation.records_all_runs:
            # Run starts are seen through our span processor, which a no-op
            # or foreign tracer never calls: every run would look missed.
            logger.warning(
                "gecko_otel: expectation for %r ignored: runs are not recorded "
                "(OTEL_SDK_DISABLED, or not an SDK TracerProvider)",
                collector_type,
            )
            return
        self._alerting.schedules.expect(
            collector_type, expectation, self._alerting.now(), tz, first_due
        )
        self._processor.on_run_start = self._run_started

    def _discard_run(self, run: Run) -> None:
        self._processor.discard(run)
        self._alerting.schedules.ended(run.collector_type, run.execution_id)

    def _run_started(self, run: Run) -> None:
        if self._alerting.schedules.has(run.collector_type):
            self._alerting.run_started(run.collector_type, run.execution_id)

    def record_not_started(
        self,
        collector_type: str,
        status: ExecutionStatus | str,
        *,
        scheduled_time: datetime,
        reason: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a scheduled run that never started: ``missed`` or ``skipped``.

        Such runs have no span and no duration. They go to history and count
        in ``total_executions``, but stay out of the health window (success
        rate, average run time); a ``skipped`` run raises the ``overlap`` rule. Used by
        scheduler integrations for APScheduler's misfire and max-instances
        events. Returns the execution id given to the record.

        Raises:
            ConfigError: ``status`` is not missed or skipped, the collector
                type is empty, or ``scheduled_time`` is not an aware datetime.
        """
        checked = status if isinstance(status, ExecutionStatus) else None
        if isinstance(status, str) and status in ("missed", "skipped"):
            checked = ExecutionStatus(status)
        if checked not in (ExecutionStatus.MISSED, ExecutionStatus.SKIPPED):
            raise ConfigError(
                f"record_not_started() takes status 'missed' or 'skipped', got {status!r}"
            )
        if not isinstance(collector_type, str) or not collector_type.strip():
            raise ConfigError(f"collector_type must be a non-empty string, got {collector_type!r}")
        if not isinstance(scheduled_time, datetime) or scheduled_time.tzinfo is None:
            raise ConfigError(
                f"scheduled_time must be a timezone-aware datetime, got {scheduled_time!r}"
            )
        execution_id = new_execution_id()
        sanitizer = self.instrumentation.sanitizer
        message = sanitizer.text(reason) if reason else None
        self._on_record(
            FinishedRun(
                collector_type,
                execution_id,
                checked,
                to_ns(scheduled_time),
                None,
                None,
                0,
                (),
                (message,) if message else (),
                MappingProxyType(sanitizer.sanitize(metadata)),
                None,
                None,
                None,
                None,
                0,
            )
        )
        return execution_id

    # -- health and alerts ---------------------------------------------------

    def health(self, collector_type: str | None = None) -> dict[str, CollectorHealth]:
        """Health of one collector or of every collector seen, by collector type.

        With no argument, every collector the Monitor knows (it has run, or
        has thresholds in ``MonitorConfig.collectors``); asked for by name, a
        collector that has not run yet is returned with status ``unknown``.
        """
        self._ingest.drain()
        return self._alerting.health(collector_type)

    def system_health(self) -> SystemHealth:
        """All collectors at a glance, with active alerts per level and drop counters."""
        self._ingest.drain()
        return self._alerting.system_health(self._dropped())

    def alerts(
        self,
        *,
        level: AlertLevel | str | None = None,
        collector_type: str | None = None,
        active_only: bool = True,
    ) -> list[Alert]:
        """Alerts, newest first: active ones, or recently resolved ones too.

        With a store, alerts of every process sharing the database are
        listed too (this process's own as it knows them now).

        Raises:
            ConfigError: ``level`` is not an alert level.
        """
        local = self._alerting.alerts(
            level=level, collector_type=collector_type, active_only=active_only
        )
        store = self._synced_store()
        if store is None:
            return local
        try:
            stored = store.alerts(
                level=AlertLevel.parse(level) if level is not None else None,
                collector_type=collector_type,
                active_only=active_only,
            )
        except self._db_error as exc:
            self._store_unavailable(exc)
            return local
        mine = {alert.id for alert in local}
        merged = local + [alert for alert, _ in stored if alert.id not in mine]
        merged.sort(key=lambda a: a.timestamp, reverse=True)
        return merged

    def acknowledge_alert(self, alert_id: str) -> bool:
        """Acknowledge an active alert: no more repeats. False for an unknown or handled id.

        With a store, an alert of another process is acknowledged in the
        database, and its process applies it within ``watchdog_interval``.
        """
        if self._alerting.acknowledge(alert_id):
            return True
        return self._set_stored_alert(alert_id, AlertState.ACKNOWLEDGED)

    def resolve_alert(self, alert_id: str) -> bool:
        """Resolve an active alert by hand (handlers hear of it).

        Returns False for an unknown id or an alert that is already resolved.
        With a store, as for :meth:`acknowledge_alert`.
        """
        if self._alerting.resolve(alert_id):
            return True
        return self._set_stored_alert(alert_id, AlertState.RESOLVED)

    def _set_stored_alert(self, alert_id: str, state: AlertState) -> bool:
        store = self._synced_store()
        if store is None:
            return False
        try:
            return store.set_alert_state(
                alert_id, state, datetime.fromtimestamp(self._alerting.now(), timezone.utc)
            )
        except self._db_error as exc:
            self._store_unavailable(exc)
            return False

    def suppress(
        self,
        collector_type: str,
        *,
        duration: timedelta | float,
        rule: str | None = None,
    ) -> datetime:
        """Silence the collector's alerts (or one rule's) for ``duration``; returns the end.

        Suppressed alerts still fire and are listed (``suppressed=True``);
        handlers are not notified until the suppression ends.

        Raises:
            ConfigError: An empty collector type or a non-positive duration.
        """
        return self._alerting.suppress(collector_type, duration, rule)

    def unsuppress(self, collector_type: str, rule: str | None = None) -> int:
        """End the collector's suppressions (one rule's, or all); how many ended."""
        return self._alerting.unsuppress(collector_type, rule)

    def add_alert_handler(self, handler: AlertHandler) -> None:
        """Notify ``handler`` too (any callable taking an Alert).

        Raises:
            ConfigError: ``handler`` is not callable.
        """
        self._alerting.add_handler(handler)

    def remove_alert_handler(self, handler: AlertHandler) -> bool:
        """Stop notifying ``handler``; False if it was not added."""
        return self._alerting.remove_handler(handler)

    def evaluate(self) -> None:
        """Evaluate the time-based rules now (what the watchdog does every interval)."""
        self._alerting.evaluate()

    def _dropped(self) -> dict[str, int]:
        dropped = {
            "dropped_runs": self._history.dropped_runs,
            "internal_errors": internal_error_count(),
        }
        if self._writer is not None:
            dropped.update(self._writer.counts())
        return dropped

    def active_runs(self) -> list[Run]:
        """Runs in progress, longest-running first (live objects: read, don't keep)."""
        return self._processor.active_runs()

    def export(self) -> dict[str, Any]:
        """Everything the Monitor knows, as a JSON-serialisable dict.

        With a store: statistics and history come from it (the newest
        ``max_history_per_collector`` runs per collector), plus each
        collector's ``collection_metadata`` row and the store's state under
        ``"store"``. For every stored run, stream :meth:`export_history`.
        """
        collectors: dict[str, Any] = {}
        limit = self.config.max_history_per_collector
        for name in self.collector_types():
            collectors[name] = {
                "statistics": self.statistics(name).to_dict(),
                "history": [r.to_dict() for r in self.history(name, limit=limit)],
            }
        exported: dict[str, Any] = {
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "monitor_started_at": self._started.isoformat(),
            "statistics": self.statistics().to_dict(),
            "collectors": collectors,
            "active_runs": [run.to_dict() for run in self.active_runs()],
            "system_health": self.system_health().to_dict(),
            **self._alerting.export(),
            "internal": {
                "internal_errors": internal_error_count(),
                "dropped_runs": self._history.dropped_runs,
                "records_every_run": self.instrumentation.records_all_runs,
            },
        }
        if self._store is not None and self._writer is not None:
            exported["store"] = self._store_state()
            exported["alerts"] = [a.to_dict() for a in self.alerts(active_only=False)]
        return exported

    def _store_state(self) -> dict[str, Any]:
        store, writer = self._store, self._writer
        assert store is not None
        assert writer is not None
        state: dict[str, Any] = {
            "url": store.describe(),
            "backend": store.backend,
            "service_name": store.service_name,
            "service_instance_id": store.service_instance_id,
            **writer.status(),
            **writer.counts(),
        }
        synced = self._synced_store()
        if synced is not None:
            try:
                state["collection_metadata"] = [row.to_dict() for row in synced.collectors()]
            except self._db_error as exc:
                self._store_unavailable(exc)
        return state

    def export_history(
        self,
        out: str | os.PathLike[str] | IO[str],
        *,
        format: str = "jsonl",
        collector_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: ExecutionStatus | str | None = None,
    ) -> int:
        """Stream every stored run (oldest first) to a file, as JSON lines or CSV.

        Rows are read a thousand at a time and written as they come, so the
        export never holds the history in memory. Runs queued for the store
        are written to it first (waiting up to ``store_read_timeout``).
        Without a store, the runs held in memory are written. Returns how
        many runs were written.

        Args:
            out: A path (overwritten) or a text file open for writing.
            format: ``"jsonl"`` (one JSON object per line) or ``"csv"``
                (lists and metadata as JSON text in their cells).
            collector_type: Only this collector's runs.
            since: Only runs started at or after this aware datetime.
            until: Only runs started before this aware datetime.
            status: Only runs with this status.

        Raises:
            ConfigError: An unknown format or an invalid filter.
            sqlalchemy.exc.OperationalError: The store is unreachable.
        """
        if format not in ("jsonl", "csv"):
            raise ConfigError(f"export format must be 'jsonl' or 'csv', got {format!r}")
        wanted, start, end = _check_status(status), _check_since(since), _check_since(until)
        if isinstance(out, str | os.PathLike):
            with open(out, "w", encoding="utf-8", newline="") as handle:
                return self.export_history(
                    handle,
                    format=format,
                    collector_type=collector_type,
                    since=since,
                    until=until,
                    status=status,
                )
        store = self._store
        if store is not None:
            self._synced_store()  # write what is queued first (bounded wait)
            return store.export_history(
                out,
                format=format,
                collector_type=collector_type,
                since=start,
                until=end,
                status=wanted,
            )
        from gecko_otel.store.store import write_export  # noqa: PLC0415

        records = reversed(self._history.records(collector_type, status=wanted, since=start))
        rows = (r.to_dict() for r in records if end is None or r.start_time < end)
        return write_export(out, format, rows)

    def record_metric(
        self, name: str, value: float, labels: Mapping[str, Any] | None = None
    ) -> None:
        """Record a custom measurement (e.g. ``"pools_seen"``) in a histogram named ``name``.

        It is exported over OTLP like every metric and, with a store, kept in
        ``performance_metrics`` every ``metrics_export_interval``. Labels
        are sanitised as metadata is (credentials redacted); a
        ``collector_type`` label fills the row's collector column. Never
        raises for a bad value once the name is valid: a non-finite value
        is ignored and logged.

        Raises:
            ConfigError: ``name`` is not a valid OpenTelemetry instrument
                name (letters first; letters, digits, ``_ . - /``; at most
                255 characters).
        """
        histogram = self._custom_metrics.get(name)
        if histogram is None:
            if not isinstance(name, str) or not _INSTRUMENT_NAME.fullmatch(name):
                raise ConfigError(
                    f"metric name {name!r} is invalid: start with a letter, then letters, "
                    "digits, '_', '.', '-' or '/', at most 255 characters"
                )
            histogram = self.instrumentation.meter.create_histogram(
                name, description=f"Custom measurement {name!r} (Monitor.record_metric)"
            )
            self._custom_metrics[name] = histogram
        try:
            number = float(value)
        except (TypeError, ValueError):
            logger.warning("gecko_otel: record_metric(%r) ignored a non-number %r", name, value)
            return
        if not math.isfinite(number):
            logger.warning("gecko_otel: record_metric(%r) ignored a non-finite %r", name, value)
            return
        attributes = self.instrumentation.sanitizer.sanitize(labels) if labels else None
        histogram.record(number, attributes=attributes)

    # -- lifecycle -----------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver queued alert notifications and export what the providers hold.

        With a store, also waits until the queued runs, alert changes and
        metric points are written. Returns True when everything was
        delivered, flushed and stored in time.
        """
        return self._flush(timeout_millis, store=True)

    def _flush(self, timeout_millis: int, *, store: bool) -> bool:
        self._ingest.drain()
        ok = self._alerting.flush(timeout_millis / 1000)
        for provider in (self._tracer_provider, self._meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is None:
                continue
            try:
                ok = bool(flush(timeout_millis)) and ok
            except Exception as exc:  # noqa: BLE001 - a broken exporter must not raise here
                report_internal_error("Monitor.force_flush", exc)
                ok = False
        writer = self._writer
        if store and writer is not None:
            ok = writer.flush(timeout_millis / 1000) and ok
        return ok

    def shutdown(self) -> None:
        """Flush, stop recording, and shut down the providers the Monitor created.

        Idempotent. Providers passed in are flushed but left running.
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        _state.uninstall(self)
        # The observable instruments keep reporting through the final flush
        # and the final collection a MeterProvider makes when it shuts down.
        # The store gets its own bounded wait below, after the last changes.
        self._flush(30_000, store=False)
        for provider in self._owned:
            _state.retire(provider)
            try:
                provider.shutdown()
            except Exception as exc:  # noqa: BLE001 - keep shutting the others down
                report_internal_error("Monitor.shutdown", exc)
        self._processor.shutdown()
        self._alerting.shutdown()
        if self._observables.monitor is self:
            self._observables.monitor = None
        if self._writer is not None and self._store is not None:
            # Last: the final metric collection and alert changes are queued by now.
            self._writer.shutdown(STORE_SHUTDOWN_TIMEOUT)
            self._store.close()
            if self._metric_exporter is not None:
                self._metric_exporter.shutdown()  # later collections have nowhere to go

    @property
    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._shutdown

    # -- read by the observable instruments (observables.py) -------------------

    def _local_collector_types(self) -> list[str]:
        self._ingest.drain()
        return self._history.collector_types()

    def _records_per_collector(self) -> list[tuple[str, int]]:
        self._ingest.drain()
        return list(self._history.per_collector_records())

    def _active_alert_counts(self) -> dict[str, int]:
        return self._alerting.engine.active_counts()

    def _drop_counts(self) -> dict[str, int]:
        return {**self._dropped(), **self._alerting.dispatcher.counts()}
