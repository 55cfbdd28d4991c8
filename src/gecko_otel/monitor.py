"""``Monitor``: the one object that owns a process's collection monitoring.

It wires the pieces together (instrumentation, history, the history span
processor, the observable metrics) and answers every question about runs.
:func:`gecko_otel.setup` builds one from the environment and installs it
globally; tests and embedders can build one directly from their own providers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import TracerProvider

from gecko_otel import _state, semconv
from gecko_otel._internal import internal_error_count, report_internal_error
from gecko_otel.config import MonitorConfig
from gecko_otel.history import History
from gecko_otel.instrumentation import Instrumentation
from gecko_otel.processor import HistorySpanProcessor
from gecko_otel.records import ExecutionRecord, ExecutionStatistics, ExecutionStatus
from gecko_otel.run import Run

logger = logging.getLogger("gecko_otel.monitor")


class Monitor:
    """Execution history and statistics of collection runs, fed by their spans.

    Args:
        tracer_provider: The SDK ``TracerProvider`` whose spans are watched; the
            history processor is added to it. Not shut down by the Monitor
            unless listed in ``owned_providers``.
        meter_provider: Where the duration histogram and the observable
            instruments are created.
        config: Limits and behaviour; ``MonitorConfig()`` when omitted.
        owned_providers: Providers the Monitor created and must shut down.

    Threading: every method is safe from any thread. Query methods take
    per-collector locks briefly; none does I/O.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        config: MonitorConfig | None = None,
        owned_providers: Iterable[Any] = (),
    ) -> None:
        self.config = config if config is not None else MonitorConfig()
        self.instrumentation = Instrumentation(tracer_provider, meter_provider, self.config)
        self._history = History(self.config)
        self._processor = HistorySpanProcessor(self._history, self.instrumentation)
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._owned = list(owned_providers)
        self._shutdown = False
        self._observing = True
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
        meter = self.instrumentation.meter
        meter.create_observable_counter(
            semconv.METRIC_RECORDS,
            callbacks=[self._observe_records],
            unit="{record}",
            description="Records collected by collection runs, by collector type.",
        )
        meter.create_observable_up_down_counter(
            semconv.METRIC_ACTIVE,
            callbacks=[self._observe_active],
            unit="{run}",
            description="Collection runs in progress, by collector type.",
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

        Raises:
            ConfigError: An argument is invalid (the message says which).
        """
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
        return self._history.statistics(collector_type, window=window)

    def collector_types(self) -> list[str]:
        """Collectors with at least one finished run, sorted."""
        return self._history.collector_types()

    def active_runs(self) -> list[Run]:
        """Runs in progress, longest-running first (live objects: read, don't keep)."""
        return self._processor.active_runs()

    def export(self) -> dict[str, Any]:
        """Everything the Monitor knows, as a JSON-serialisable dict."""
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
            "internal": {
                "internal_errors": internal_error_count(),
                "dropped_runs": self._history.dropped_runs,
                "records_every_run": self.instrumentation.records_all_runs,
            },
        }

    # -- lifecycle -----------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what the providers hold; True when everything was flushed."""
        ok = True
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
        self._observing = False

    @property
    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` has been called."""
        return self._shutdown

    # -- observable instruments ------------------------------------------------

    def _observe_records(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._observing:
            return []
        return [
            Observation(total, {semconv.COLLECTOR_TYPE: name})
            for name, total in self._history.per_collector_records()
        ]

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._observing:
            return []
        counts = dict.fromkeys(self._history.collector_types(), 0)
        for run in self._processor.active_runs():
            counts[run.collector_type] = counts.get(run.collector_type, 0) + 1
        return [Observation(n, {semconv.COLLECTOR_TYPE: name}) for name, n in counts.items()]
