"""The observable instruments: read from running state at collection time.

Nothing here runs per collection run: records, active runs, health and
alerts are read when the metric reader collects. The instruments are created
once per MeterProvider (the SDK hands back the first instrument when the same
name is registered again, with the first callbacks), and their callbacks
read whichever Monitor currently serves that provider (through its readings), so a Monitor created
after another one shut down on the same providers still reports.

Threading: callbacks run on the metric reader's thread (or the caller of
``collect``); they take the Monitor's locks briefly and never raise (the
SDK logs callback errors; ours are counted as internal errors).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from gecko_otel import semconv
from gecko_otel._guard import guarded, internal_error_count

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter

    from gecko_otel._values.health import CollectorHealth
    from gecko_otel.typing import MetricReadings

#: Health is read once per collection for the per-collector gauges.
_HEALTH_TTL: Final = 1.0

_registry: weakref.WeakKeyDictionary[MeterProvider, Observables] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def observables_for(meter_provider: MeterProvider, meter: Meter) -> Observables:
    """The provider's observable instruments, created on first use."""
    with _registry_lock:
        try:
            existing = _registry.get(meter_provider)
        except TypeError:  # a provider that cannot be weakly referenced
            existing = None
        if existing is not None:
            return existing
        observables = Observables(meter)
        with contextlib.suppress(TypeError):  # not weakly referenceable: not shared
            _registry[meter_provider] = observables
        return observables


class Observables:
    """Observable instruments whose callbacks read ``source``."""

    def __init__(self, meter: Meter) -> None:
        #: What the callbacks read: the serving Monitor's readings (None: nothing).
        self.source: MetricReadings | None = None
        self._health: tuple[MetricReadings, float, Mapping[str, CollectorHealth]] | None = None
        meter.create_observable_counter(
            semconv.METRIC_RECORDS,
            callbacks=[self._guard(self._records)],
            unit="{record}",
            description="Records collected by collection runs, by collector type.",
        )
        meter.create_observable_counter(
            semconv.METRIC_RUNS,
            callbacks=[self._guard(self._runs)],
            unit="{run}",
            description="Runs ended, by collector type and status (missed and skipped included).",
        )
        meter.create_observable_up_down_counter(
            semconv.METRIC_ACTIVE,
            callbacks=[self._guard(self._active)],
            unit="{run}",
            description="Collection runs in progress, by collector type.",
        )
        gauges: tuple[tuple[str, Callable[[CollectorHealth], float | None], str, str], ...] = (
            (
                semconv.METRIC_HEALTH_SCORE,
                lambda h: h.health_score,
                "{score}",
                "Health score of each collector, 0-100.",
            ),
            (
                semconv.METRIC_HEALTH_STATUS,
                lambda h: h.status.gauge_value,
                "{status}",
                "Health status: 0 unknown, 1 healthy, 2 warning, 3 critical.",
            ),
            (
                semconv.METRIC_CONSECUTIVE_FAILURES,
                lambda h: h.consecutive_failures,
                "{run}",
                "Failed or timed-out runs since the last successful one.",
            ),
            (
                semconv.METRIC_LAST_SUCCESS,
                # 0 for a collector that never succeeded: a series a stale rule can see.
                lambda h: h.last_success.timestamp() if h.last_success else 0.0,
                "s",
                "Unix time of the last successful run of each collector; 0: never succeeded.",
            ),
            (
                semconv.METRIC_USUAL_RECORDS,
                lambda h: h.usual_records.median if h.usual_records else None,
                "{record}",
                "Usual records per run of each collector: its baseline's median.",
            ),
            (
                semconv.METRIC_USUAL_DURATION,
                lambda h: h.usual_duration.median if h.usual_duration else None,
                "s",
                "Usual run time of each collector: its baseline's median.",
            ),
            (
                semconv.METRIC_LAST_RECORDS,
                lambda h: h.last_records_at.timestamp() if h.last_records_at else None,
                "s",
                "Unix time of the last run of each collector that collected records.",
            ),
        )
        for i, (name, read, unit, description) in enumerate(gauges):
            meter.create_observable_gauge(
                name,
                callbacks=[self._guard(self._per_collector(read, refresh=i == 0))],
                unit=unit,
                description=description,
            )
        meter.create_observable_gauge(
            semconv.METRIC_ALERTS_ACTIVE,
            callbacks=[self._guard(self._alerts)],
            unit="{alert}",
            description="Active (firing or acknowledged) alerts by collector type, rule, level.",
        )
        meter.create_observable_counter(
            semconv.METRIC_DROPPED,
            callbacks=[self._guard(self._dropped)],
            unit="{item}",
            description="What gecko-otel lost (and counted), by reason.",
        )

    def serve(self, source: MetricReadings) -> None:
        """Report ``source`` from now on (the newest Monitor on this provider)."""
        self.source = source

    def release(self, source: MetricReadings) -> None:
        """Stop reporting ``source``, unless another Monitor took over already."""
        if self.source is source:
            self.source = None

    def _guard(
        self, read: Callable[[MetricReadings], list[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            source = self.source
            if source is None:
                return []
            with guarded("observable instrument callback"):  # a metric callback must not raise
                return read(source)
            return []

        return callback

    def _records(self, source: MetricReadings) -> list[Observation]:
        return [
            Observation(total, {semconv.COLLECTOR_TYPE: name})
            for name, total in source.records_per_collector()
        ]

    def _runs(self, source: MetricReadings) -> list[Observation]:
        return [
            Observation(runs, {semconv.COLLECTOR_TYPE: name, semconv.COLLECTION_STATUS: status})
            for name, status, runs in source.runs_per_collector()
        ]

    def _active(self, source: MetricReadings) -> list[Observation]:
        counts = dict.fromkeys(source.collector_types(), 0)
        for collector_type in source.active_collector_types():
            counts[collector_type] = counts.get(collector_type, 0) + 1
        return [Observation(n, {semconv.COLLECTOR_TYPE: name}) for name, n in counts.items()]

    def _per_collector(
        self, read: Callable[[CollectorHealth], float | None], *, refresh: bool
    ) -> Callable[[MetricReadings], list[Observation]]:
        def observe(source: MetricReadings) -> list[Observation]:
            out = []
            for name, health in self._health_of(source, refresh=refresh).items():
                value = read(health)
                if value is not None:
                    out.append(Observation(value, {semconv.COLLECTOR_TYPE: name}))
            return out

        return observe

    def _health_of(self, source: MetricReadings, *, refresh: bool) -> Mapping[str, CollectorHealth]:
        # One health pass serves the gauges of a collection: the first
        # gauge's callback computes it, the next ones (called right after it
        # in the same collection) reuse it.
        now = time.monotonic()
        cached = self._health
        if refresh or cached is None or cached[0] is not source or now - cached[1] > _HEALTH_TTL:
            cached = (source, now, source.health())
            self._health = cached
        return cached[2]

    def _alerts(self, source: MetricReadings) -> list[Observation]:
        return [
            Observation(
                1,
                {
                    semconv.COLLECTOR_TYPE: collector_type,
                    semconv.ALERT_RULE: rule,
                    semconv.ALERT_LEVEL: level,
                },
            )
            for collector_type, rule, level in source.active_alerts()
        ]

    def _dropped(self, source: MetricReadings) -> list[Observation]:
        return [
            Observation(count, {semconv.DROP_REASON: reason})
            for reason, count in source.drop_counts().items()
        ]


class Readings:
    """A Monitor's `MetricReadings`: what its observable instruments read.

    Args:
        source: Records, collector types, health and alert counts, handler
            drops and evicted collectors (the run pipeline).
        active_runs: The runs in progress (the span processor's).
        drop_counts: Further drop counters to report (the store's).
    """

    def __init__(
        self,
        source: Any,
        *,
        active_runs: Callable[[], Iterable[Any]],
        drop_counts: Iterable[Callable[[], Mapping[str, int]]],
    ) -> None:
        self.records_per_collector = source.records_per_collector
        self.runs_per_collector = source.runs_per_collector
        self.collector_types = source.collector_types
        self.health = source.health
        self.active_alerts = source.engine.active_alerts
        self._active_runs = active_runs
        self._drop_counts = (*drop_counts, source.dispatcher.counts, source.roster.counts)

    def active_collector_types(self) -> list[str]:
        return [run.collector_type for run in self._active_runs()]

    def drop_counts(self) -> dict[str, int]:
        counts = {"internal_errors": internal_error_count()}
        for read in self._drop_counts:
            counts.update(read())
        return counts
