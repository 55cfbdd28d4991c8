"""``Monitor``: the one object that owns a process's collection monitoring.

It wires the pieces together (instrumentation, history, the history span
processor, the observable metrics) and answers every question about runs.
:func:`gecko_otel.setup` builds one from the environment and installs it
globally; tests and embedders can build one directly from their own providers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from gecko_otel import _state
from gecko_otel._internal import internal_error_count, report_internal_error
from gecko_otel.alerting import Alerting
from gecko_otel.alerts import Alert, AlertLevel
from gecko_otel.config import MonitorConfig, check_seconds
from gecko_otel.errors import ConfigError
from gecko_otel.health import CollectorHealth, SystemHealth
from gecko_otel.history import History
from gecko_otel.ingest import RunIngest
from gecko_otel.instrumentation import Instrumentation, new_execution_id
from gecko_otel.observables import observables_for
from gecko_otel.processor import HistorySpanProcessor
from gecko_otel.records import (
    ExecutionRecord,
    ExecutionStatistics,
    ExecutionStatus,
    FinishedRun,
    to_ns,
)
from gecko_otel.run import Run
from gecko_otel.schedule import Expectation, make_expectation
from gecko_otel.typing import AlertHandler

logger = logging.getLogger("gecko_otel.monitor")


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

    Threading: every method is safe from any thread. Query methods take
    per-collector locks briefly; none does I/O.
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
    ) -> None:
        self.config = config if config is not None else MonitorConfig()
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

    def _on_record(self, record: FinishedRun) -> None:
        # On the thread that ended the run: O(1) amortised, no I/O.
        self._ingest.add(record)

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

        Raises:
            ConfigError: An argument is invalid (the message says which).
        """
        self._ingest.drain()
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
        """
        self._ingest.drain()
        return self._history.statistics(collector_type, window=window)

    def cleanup(self, older_than: timedelta | float) -> dict[str, int]:
        """Forget runs started, and alerts resolved, more than ``older_than`` ago.

        Active alerts, health and the running statistics are kept. Runs are
        aged by their start time (wall clock, as on their spans), alerts by
        when they resolved (the Monitor's clock). Returns how many were
        removed: ``{"execution_history": n, "system_alerts": m}``.

        Raises:
            ConfigError: ``older_than`` is not a positive duration.
        """
        age = check_seconds("older_than", older_than)
        self._ingest.drain()
        return {
            "execution_history": self._history.cleanup(
                datetime.now(timezone.utc) - timedelta(seconds=age)
            ),
            "system_alerts": self._alerting.engine.forget_resolved(self._alerting.now() - age),
        }

    def collector_types(self) -> list[str]:
        """Collectors with at least one finished run, sorted."""
        self._ingest.drain()
        return self._history.collector_types()

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

        Raises:
            ConfigError: ``level`` is not an alert level.
        """
        self._ingest.drain()
        return self._alerting.alerts(
            level=level, collector_type=collector_type, active_only=active_only
        )

    def acknowledge_alert(self, alert_id: str) -> bool:
        """Acknowledge an active alert: no more repeats. False for an unknown or handled id."""
        return self._alerting.acknowledge(alert_id)

    def resolve_alert(self, alert_id: str) -> bool:
        """Resolve an active alert by hand (handlers hear of it).

        Returns False for an unknown id or an alert that is already resolved.
        """
        return self._alerting.resolve(alert_id)

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
        return {
            "dropped_runs": self._history.dropped_runs,
            "internal_errors": internal_error_count(),
        }

    def active_runs(self) -> list[Run]:
        """Runs in progress, longest-running first (live objects: read, don't keep)."""
        return self._processor.active_runs()

    def export(self) -> dict[str, Any]:
        """Everything the Monitor knows, as a JSON-serialisable dict."""
        self._ingest.drain()
        collectors = {}
        for name in self._history.collector_types():
            collectors[name] = {
                "statistics": self.statistics(name).to_dict(),
                "history": [r.to_dict() for r in self.history(name)],
            }
        return {
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

    # -- lifecycle -----------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver queued alert notifications and export what the providers hold.

        Returns True when everything was delivered and flushed in time.
        """
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
        self.force_flush()
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

    @property
    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._shutdown

    # -- read by the observable instruments (observables.py) -------------------

    def _records_per_collector(self) -> list[tuple[str, int]]:
        self._ingest.drain()
        return list(self._history.per_collector_records())

    def _active_alert_counts(self) -> dict[str, int]:
        return self._alerting.engine.active_counts()

    def _drop_counts(self) -> dict[str, int]:
        return {**self._dropped(), **self._alerting.dispatcher.counts()}
