"""``Monitor``: the facade over one process's collection monitoring.

It builds the parts and wires them once, through constructor arguments: the
instrumentation (spans, metrics), the history span processor, the run
pipeline (history, health rules, alert engine, dispatcher, watchdog) and one
storage backend (memory or SQL, behind `RunStore`).
Every public method delegates to one of them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from gecko_otel._capture.instruments import (
    CustomMetrics,
    Instrumentation,
    flush_providers,
    not_started_run,
    shutdown_providers,
)
from gecko_otel._capture.observables import Readings, observables_for
from gecko_otel._capture.run import Run
from gecko_otel._capture.span_processor import HistorySpanProcessor, attach
from gecko_otel._checks import Deadline, check_seconds, seconds
from gecko_otel._config import MonitorConfig, Thresholds
from gecko_otel._guard import guarded, internal_error_count
from gecko_otel._health.expectations import Expectation, expectation_of
from gecko_otel._history.memory import History, check_limit, check_since, check_status, check_window
from gecko_otel._pipeline.pipeline import RunPipeline
from gecko_otel._values.alerts import Alert, AlertState, newest_first
from gecko_otel._values.health import AlertLevel, CollectorHealth, SystemHealth
from gecko_otel._values.records import ExecutionRecord, ExecutionStatistics, ExecutionStatus
from gecko_otel._worker import untraced
from gecko_otel.store._open import open_backend
from gecko_otel.store.export import check_format, open_export
from gecko_otel.typing import AlertHandler

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gecko_otel.serving import StatusServer
    from gecko_otel.store.metrics import StoreMetricExporter

logger = logging.getLogger("gecko_otel.monitor")


class Monitor:
    """Execution history, statistics, health and alerts of collection runs.

    Args:
        tracer_provider: The SDK ``TracerProvider`` whose spans are watched (the
            history processor is added to it).
        meter_provider: Where the duration histogram and observable instruments live.
        config: Limits, thresholds and behaviour; ``MonitorConfig()`` when omitted.
        alert_handlers: Alert handlers to start with (any callable taking an `Alert`).
        owned_providers: Providers the Monitor created and shuts down; others
            are flushed and left running.
        clock: Unix time in seconds for health and alerts (``time.time``); tests
            pass a fake clock to move time without sleeping. Elapsed time is
            measured on its ``monotonic()`` when it has one (``time.monotonic``
            by default), so a step of the wall clock fires nothing.
        watchdog: Run the thread that evaluates time-based rules every
            ``watchdog_interval``; with False, call `evaluate` yourself.
        database: A URL (``sqlite:///path.db``, ``postgresql+psycopg://...``) or a
            SQLAlchemy ``Engine`` you own (never disposed); ``config.database_url``
            when omitted; memory only when both are None. The schema is
            migrated, and health and active alerts rebuilt from it, on start.
        metric_exporter: A `StoreMetricExporter` on a reader of
            ``meter_provider`` (`store_metric_reader`), so metric points are
            stored; ``setup()`` adds one to the MeterProvider it creates.
        on_shutdown: Called with the Monitor once, when `shutdown` begins
            (``setup()`` uninstalls its global Monitor there).

    Threading: every method is safe from any thread. Without a database,
    queries take per-collector locks briefly and do no I/O; with one, they
    read it (never on a collector's thread: runs only enqueue).

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
        on_shutdown: Callable[[Monitor], None] | None = None,
    ) -> None:
        self.config = config = config if config is not None else MonitorConfig()
        history = History(config)
        resource = getattr(tracer_provider, "resource", None)
        # Opened (and its schema checked) first: a refused database leaves
        # nothing running behind the ConfigError. Migrations, PRAGMAs and the
        # restore are our own work, not spans for the user's backend.
        with untraced():
            self._store = open_backend(
                database if database is not None else config.database_url,
                config,
                history,
                resource_attributes=dict(getattr(resource, "attributes", None) or {}),
                metric_exporter=metric_exporter,
                before_exit=self._before_store_exit,
            )
        self.instrumentation = Instrumentation(
            tracer_provider, meter_provider, config, discard_run=self._discard_run
        )
        self._pipeline = pipeline = RunPipeline(
            config, history, self._store, clock=clock, handlers=alert_handlers, watchdog=watchdog
        )
        self._processor = HistorySpanProcessor(
            self.instrumentation, pipeline.add, pipeline.run_started, pipeline.schedules.watched
        )
        self._custom_metrics = CustomMetrics(self.instrumentation)
        self._providers = (tracer_provider, meter_provider)
        self._owned = list(owned_providers)
        self._on_shutdown = on_shutdown
        self._shutdown = False
        self._lock = threading.Lock()
        self._servers: list[StatusServer] = []
        self._started = datetime.now(timezone.utc)
        attach(tracer_provider, self._processor)
        self._readings = Readings(
            pipeline, active_runs=self._processor.active_runs, drop_counts=(self._store.counts,)
        )
        self._observables = observables_for(meter_provider, self.instrumentation.meter)
        self._observables.serve(self._readings)
        with untraced():
            self._store.start(pipeline)

    # -- queries -------------------------------------------------------------

    def history(
        self,
        collector_type: str | None = None,
        *,
        limit: int | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
    ) -> list[ExecutionRecord]:
        """Finished runs, newest first: of one collector (or all), at most ``limit``,
        with ``status``, started at or after ``since`` (an aware datetime); with a
        database, of every process sharing it. ConfigError for an invalid argument."""
        limit, wanted, since = check_limit(limit), check_status(status), check_since(since)
        self._pipeline.drain()
        return self._store.history(collector_type, limit=limit, status=wanted, since=since)

    def statistics(
        self,
        collector_type: str | None = None,
        *,
        window: timedelta | float | None = None,
    ) -> ExecutionStatistics:
        """Aggregate figures for one collector or all, within ``window`` if given: from
        running totals since start (or the runs held in memory, with ``window``), or
        with a database in SQL over every stored run of every process sharing it."""
        seconds = check_window(window)
        self._pipeline.drain()
        return self._store.statistics(collector_type, window=seconds)

    def collector_types(self) -> list[str]:
        """Collectors with at least one finished run, sorted (stored ones too)."""
        self._pipeline.drain()
        return self._store.collector_types()

    def active_runs(self) -> list[Run]:
        """Runs in progress, longest-running first (live objects: read, don't keep)."""
        return self._processor.active_runs()

    def health(self, collector_type: str | None = None) -> dict[str, CollectorHealth]:
        """Health by collector type: every collector known (it ran, or has
        thresholds configured), or one asked for by name (``unknown`` before it runs)."""
        return self._pipeline.health(collector_type)

    def system_health(self) -> SystemHealth:
        """All collectors at a glance: active alerts per level, drop counters, limits."""
        return self._pipeline.system_health(
            self._readings.drop_counts(), self.instrumentation.limits()
        )

    def alerts(
        self,
        *,
        level: AlertLevel | str | None = None,
        collector_type: str | None = None,
        active_only: bool = True,
    ) -> list[Alert]:
        """Alerts, newest first: active ones, or recently resolved ones too (with a
        database, other processes' too). ConfigError for an unknown ``level``."""
        parsed = AlertLevel.parse(level) if level is not None else None
        local = self._pipeline.alerts(
            level=parsed, collector_type=collector_type, active_only=active_only
        )
        stored = self._store.alerts(
            level=parsed, collector_type=collector_type, active_only=active_only
        )
        return newest_first(local, stored)

    # -- alert actions -------------------------------------------------------

    def acknowledge_alert(self, alert_id: str) -> bool:
        """Acknowledge an active alert (no more repeats); False for an unknown or handled
        id. Another process's alert is acknowledged in the database, and its process
        applies it within ``watchdog_interval``."""
        return self._pipeline.acknowledge(alert_id) or self._set_stored(
            alert_id, AlertState.ACKNOWLEDGED
        )

    def resolve_alert(self, alert_id: str) -> bool:
        """Resolve an active alert by hand (handlers hear of it); False for an unknown
        or resolved id. Another process's alert as for `acknowledge_alert`."""
        return self._pipeline.resolve(alert_id) or self._set_stored(alert_id, AlertState.RESOLVED)

    def _set_stored(self, alert_id: str, state: AlertState) -> bool:
        if self._pipeline.owns(alert_id):  # ours, already handled: no flush, no I/O
            return False
        at = datetime.fromtimestamp(self._pipeline.now(), timezone.utc)
        return self._store.set_alert_state(alert_id, state, at)

    def suppress(
        self, collector_type: str, *, duration: timedelta | float, rule: str | None = None
    ) -> datetime:
        """Silence the collector's alerts (or one rule's) for ``duration``; returns the end.

        Suppressed alerts still fire and are listed (``suppressed=True``), but
        handlers hear of them only once it ends. ConfigError for an invalid
        collector type or a non-positive duration.

        This process only, in memory, even with a database: a restart forgets
        it. A silence every Monitor on the store honours, and that survives
        restarts, is set with ``gecko-otel silence``; the store's silences are
        applied beside this one and never end it."""
        return self._pipeline.suppress(collector_type, duration, rule)

    def unsuppress(self, collector_type: str, rule: str | None = None) -> int:
        """End the collector's suppressions (one rule's, or all); how many ended."""
        return self._pipeline.unsuppress(collector_type, rule)

    def thresholds(self, collector_type: str) -> Thresholds:
        """The thresholds ``collector_type`` is evaluated with now."""
        return self._pipeline.thresholds(collector_type)

    def set_thresholds(self, collector_type: str | None = None, /, **changes: Any) -> None:
        """Change thresholds while collectors run: for every collector, or one.

        ``monitor.set_thresholds("pools", max_execution_time=600)``. Validated
        as `MonitorConfig` and `CollectorThresholds` validate them (ConfigError
        naming the field); in force at once, and the collectors concerned are
        re-evaluated: an alert whose rule no longer holds resolves, one that
        now holds fires. For one collector, None goes back to the global value.

        This process only; ``config`` shows the change. Thresholds stored with
        ``gecko-otel thresholds`` reach every Monitor on the store and win over
        these (see the configuration guide)."""
        self.config = self._pipeline.set_thresholds(collector_type, changes)

    def add_alert_handler(self, handler: AlertHandler) -> None:
        """Notify ``handler`` too (any callable taking an Alert); ConfigError if not callable."""
        self._pipeline.add_handler(handler)

    def remove_alert_handler(self, handler: AlertHandler) -> bool:
        """Stop notifying ``handler``; False if it was not added."""
        return self._pipeline.remove_handler(handler)

    def evaluate(self) -> None:
        """Evaluate the time-based rules now (what the watchdog does every interval)."""
        self._pipeline.evaluate()

    # -- schedule expectations -------------------------------------------------

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
        """Declare when the collector should run (and for how long at most); again replaces it.

        The watchdog raises ``missed_run`` (error) when no run started by a due
        time plus ``grace`` (a dead man's switch: it works even if the scheduler
        died), and ``runtime_exceeded`` (critical) while a run goes on past
        ``max_runtime``. Both resolve on their own.

        Args:
            collector_type: The collector.
            every: Interval between starts (timedelta or seconds).
            cron: Cron expression for the starts, e.g. ``"*/5 * * * *"`` (needs
                the ``cron`` extra or APScheduler), in ``timezone`` (UTC).
            grace: How late a start may be (default 60 s).
            max_runtime: How long a run may take, or None.
            timezone: Time zone of ``cron``.
            first_due: When the first run is due (e.g. a scheduler's next run
                time); by default one interval (or the next cron time) from now.

        Raises:
            ConfigError: Both or neither of every/cron (without max_runtime), or an
                invalid duration, cron, time zone, collector type or ``first_due``.
        """
        expectation, due = expectation_of(
            collector_type,
            every=every,
            cron=cron,
            grace=grace,
            max_runtime=max_runtime,
            tz=timezone,
            first_due=first_due,
        )
        if self.instrumentation.records_all_runs:
            self._pipeline.expect(collector_type, expectation, timezone, due)
        else:  # run starts come through our span processor: all would look missed
            logger.warning(
                "gecko_otel: expectation for %r ignored: runs are not recorded "
                "(OTEL_SDK_DISABLED, or not an SDK TracerProvider)",
                collector_type,
            )

    def unexpect(self, collector_type: str) -> bool:
        """Withdraw the collector's expectation (its schedule alerts resolve); False if none."""
        return self._pipeline.unexpect(collector_type)

    def expectation(self, collector_type: str) -> Expectation | None:
        """The collector's declared expectation, if it has one."""
        return self._pipeline.schedules.expectation(collector_type)

    def record_not_started(
        self,
        collector_type: str,
        status: ExecutionStatus | str,
        *,
        scheduled_time: datetime,
        reason: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a scheduled run that never started (``missed`` or ``skipped``); its id.

        No span, no duration; in history and ``total_executions``, not in the
        health window; a ``skipped`` run raises ``overlap``. For schedulers.

        Raises:
            ConfigError: ``status`` is not missed or skipped, the collector
                type is invalid, or ``scheduled_time`` is not an aware datetime.
        """
        run = not_started_run(
            self.instrumentation.sanitizer,
            collector_type,
            status=status,
            scheduled_time=scheduled_time,
            reason=reason,
            metadata=metadata,
        )
        self._pipeline.add(run)
        return run.execution_id

    def _discard_run(self, run: Run) -> None:
        self._processor.discard(run)
        self._pipeline.schedules.ended(run.collector_type, run.execution_id)

    # -- export and maintenance ----------------------------------------------

    def export(self) -> dict[str, Any]:
        """Everything the Monitor knows, as a JSON-serialisable dict: statistics and the
        newest ``max_history_per_collector`` runs per collector, health, alerts,
        expectations, drop counters, and a database's state under ``"store"``."""
        self._pipeline.drain()
        collectors = {
            name: {
                "statistics": statistics.to_dict(),
                "history": [r.to_dict() for r in history],
            }
            for name, (statistics, history) in sorted(
                self._store.by_collector(self.config.max_history_per_collector).items()
            )
        }
        return {
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "monitor_started_at": self._started.isoformat(),
            "statistics": self.statistics().to_dict(),
            "collectors": collectors,
            "active_runs": [run.to_dict() for run in self.active_runs()],
            "system_health": self.system_health().to_dict(),
            **self._pipeline.export(),
            "alerts": [a.to_dict() for a in self.alerts(active_only=False)],
            "internal": {
                "internal_errors": internal_error_count(),
                "evicted_collectors": self._pipeline.roster.evicted,
                "records_every_run": self.instrumentation.records_all_runs,
            },
            **self._store.export_state(),
        }

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
        """Stream runs, oldest first, to ``out`` (a path, overwritten, or a text file)
        as ``"jsonl"`` or ``"csv"`` (lists and metadata as JSON in their cells); how
        many. Filters: ``collector_type``, ``status``, start time in [since, until).

        Rows are read a thousand at a time (memory stays flat), after what is
        queued is written (up to ``store_read_timeout``); without a database,
        the runs held in memory.

        Raises:
            ConfigError: An unknown format or an invalid filter.
            sqlalchemy.exc.OperationalError: The database is unreachable.
        """
        check_format(format)
        wanted, start, end = check_status(status), check_since(since), check_since(until)
        self._pipeline.drain()
        with open_export(out) as handle:
            return self._store.export_history(
                handle,
                format=format,
                collector_type=collector_type,
                since=start,
                until=end,
                status=wanted,
            )

    def cleanup(self, older_than: timedelta | float) -> dict[str, int]:
        """Forget runs started, and alerts resolved, more than ``older_than`` ago.

        Active alerts and health are kept, and so are the running totals of
        a Monitor without a database. Runs age by start time (wall clock),
        alerts by resolution time (the Monitor's clock). Returns how many were
        removed per table (``execution_history``, ``system_alerts``, and with a
        database ``performance_metrics``, deleted in short batches).

        Raises:
            ConfigError: ``older_than`` is not a positive duration.
            sqlalchemy.exc.OperationalError: The database is unreachable.
        """
        age = check_seconds("older_than", older_than)
        self._pipeline.drain()
        resolved_before = self._pipeline.now() - age
        forgotten = self._pipeline.forget_resolved(resolved_before)
        return {
            "system_alerts": forgotten,
            **self._store.cleanup(
                datetime.now(timezone.utc) - timedelta(seconds=age),
                datetime.fromtimestamp(resolved_before, timezone.utc),
            ),
        }

    def record_metric(
        self, name: str, value: float, labels: Mapping[str, Any] | None = None
    ) -> None:
        """Record a custom measurement in a histogram named ``name`` (e.g. ``"pools_seen"``),
        exported like every metric and, with a database, kept in ``performance_metrics``.

        Labels are sanitised as metadata is; a ``collector_type`` label fills the
        row's collector column. A non-number or non-finite value is ignored and
        logged. ConfigError for an invalid instrument name (a letter, then
        letters, digits, ``_ . - /``; 255 at most)."""
        self._custom_metrics.record(name, value, labels)

    def serve_http(
        self,
        host: str = "127.0.0.1",
        port: int = 9465,
        token: str | None = None,
        *,
        metrics: Any = True,
    ) -> StatusServer:
        """Serve this Monitor's status page and probes on its own threads until `shutdown`
        (or ``close()`` on the server returned; its ``url`` says where). See
        `gecko_otel.serving.StatusServer` for the arguments and the routes.

        ``metrics``: ``/metrics`` serves prometheus_client's default registry
        when True and the ``prometheus`` extra is installed (the metrics are
        there with ``setup(metric_readers=[PrometheusMetricReader()])``);
        a ``CollectorRegistry`` serves that one; False turns it off.

        Raises:
            ConfigError: The address cannot be listened on, the token is
                malformed, or ``metrics`` is a registry without prometheus_client.
            RuntimeError: The Monitor is shut down.
        """
        from gecko_otel.serving import MonitorSource, StatusServer  # noqa: PLC0415 - when asked
        from gecko_otel.serving.metrics import choose  # noqa: PLC0415

        exposition, no_metrics = choose(metrics)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("serve_http() on a Monitor that is shut down")
            server = StatusServer(
                MonitorSource(self),
                host=host,
                port=port,
                token=token,
                metrics=exposition,
                no_metrics=no_metrics,
            )
            self._servers.append(server)
        return server

    # -- lifecycle -----------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver queued notifications, export what the providers hold, store the rest;
        True when all of it was done in time."""
        return self._flush(timeout_millis) and self._store.flush(timeout_millis / 1000)

    def _flush(self, timeout_millis: int) -> bool:
        delivered = self._pipeline.flush(timeout_millis / 1000)
        return flush_providers(self._providers, timeout_millis) and delivered

    def _before_store_exit(self) -> None:
        # At interpreter exit, before the store's last flush: queue the last
        # runs, alert changes and metric points.
        if not self._shutdown:
            self._flush(5_000)

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Flush, stop recording, and shut down the providers the Monitor created
        (others are flushed and left running). Idempotent.

        Everything shares one deadline, ``timeout_millis`` or
        ``config.shutdown_timeout``: notifications, exporters and the store.
        An exporter that has not finished by then is left to finish in the
        background; runs the store could not write are counted and logged.
        """
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        for server in self._servers:  # probes see the Monitor gone, not a half-stopped one
            server.close(0.5)
        deadline = Deadline(
            timeout_millis / 1000
            if timeout_millis is not None
            else seconds(self.config.shutdown_timeout)
        )
        if self._on_shutdown is not None:
            with guarded("Monitor.shutdown"):
                self._on_shutdown(self)
        # The observables keep reporting through the final flush and the final
        # collection a MeterProvider makes as it shuts down; the store gets
        # what is left of the deadline last, after the last changes.
        self._flush(int(deadline.left() * 1000 * 0.5))
        shutdown_providers(self._owned, deadline.left() * 0.5)
        self._processor.shutdown()
        self._pipeline.shutdown(deadline.left() * 0.5)
        self._observables.release(self._readings)
        self._pipeline.drain()
        self._store.shutdown(deadline.left())

    @property
    def is_shutdown(self) -> bool:
        """Whether `shutdown` has been called."""
        return self._shutdown
