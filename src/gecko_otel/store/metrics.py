"""The store's metric exporter: the metrics OTLP sends, kept in ``performance_metrics``.

A `StoreMetricExporter` sits on its own ``PeriodicExportingMetricReader``
(every ``metrics_export_interval``) of the Monitor's MeterProvider and turns
every data point of gecko-otel's meter (``gecko.collection.duration``, the
observable records, active-run and health instruments, and custom metrics
from ``Monitor.record_metric``) into a row: counters and histograms with
*delta* temporality, so each row is what happened in its interval and sums
over rows are totals; gauges and up-down counters as their current value.
A histogram row's ``value`` is the interval's sum, with ``count``, ``min``
and ``max`` beside it. Points of other meters on a shared provider are
left to OTLP.

The exporter only builds rows and hands them to the background writer: it
never touches the database on the reader's thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData

from gecko_otel import semconv
from gecko_otel._guard import guarded
from gecko_otel.store.rows import clean_json, clean_text
from gecko_otel.store.schema import NAME_LENGTH
from gecko_otel.store.writer import METRIC

if TYPE_CHECKING:
    from gecko_otel.store.store import Store
    from gecko_otel.store.writer import StoreWriter

#: Attributes that name the collector a point belongs to (the first found wins).
COLLECTOR_KEYS: Final = (semconv.COLLECTOR_TYPE, "collector_type")

_DELTA: Final[dict[type, AggregationTemporality]] = {
    Counter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}
_DELTA_T: Final = AggregationTemporality.DELTA
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _time(ns: int | None) -> datetime | None:
    if not ns:
        return None
    return _EPOCH + timedelta(microseconds=ns // 1000)


class StoreMetricExporter(MetricExporter):
    """Hands gecko-otel's metric points to the store writer as ``performance_metrics`` rows.

    Created unbound (before the Monitor and its store exist, since a
    MeterProvider takes its readers when it is built) and bound by the
    Monitor with `bind`; points exported while unbound are dropped.

    Args:
        scope: Only points of this instrumentation scope are kept.
    """

    def __init__(self, scope: str = semconv.SCOPE_NAME) -> None:
        super().__init__(preferred_temporality=dict(_DELTA))
        self._scope = scope
        self._store: Store | None = None
        self._writer: StoreWriter | None = None

    def bind(self, store: Store, writer: StoreWriter) -> None:
        """Send rows to ``writer`` (written to ``store``)."""
        self._store, self._writer = store, writer

    @property
    def bound(self) -> bool:
        """Whether a Monitor's store receives the points."""
        return self._writer is not None

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        store, writer = self._store, self._writer
        if store is None or writer is None:
            return MetricExportResult.SUCCESS
        result = MetricExportResult.FAILURE
        with guarded("StoreMetricExporter.export"):  # the reader thread must go on
            for resource_metrics in metrics_data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    if scope_metrics.scope.name != self._scope:
                        continue
                    for metric in scope_metrics.metrics:
                        for row in rows_of(metric.name, metric.unit, metric.data, store):
                            writer.put(METRIC, row)
            result = MetricExportResult.SUCCESS
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True  # rows are queued at once; the Monitor flushes the writer

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._store = self._writer = None


def rows_of(name: str, unit: str | None, data: Any, store: Store) -> list[dict[str, Any]]:
    """The ``performance_metrics`` rows of one metric's data points."""
    if isinstance(data, HistogramData):
        kind = "histogram"
    elif isinstance(data, Sum):
        kind = "sum" if data.is_monotonic else "updown"
    elif isinstance(data, Gauge):
        kind = "gauge"
    else:  # exponential histograms: not produced by our instruments
        return []
    rows = []
    for point in data.data_points:
        labels = dict(point.attributes or {})
        collector = None
        for key in COLLECTOR_KEYS:
            value = labels.pop(key, None)
            if value is not None:
                collector = clean_text(str(value), NAME_LENGTH)
                break
        row: dict[str, Any] = {
            "name": clean_text(name, NAME_LENGTH),
            "collector_type": collector,
            "kind": kind,
            "count": None,
            "min": None,
            "max": None,
            "unit": clean_text(unit, 64) or None,
            "labels": clean_json(_plain(labels)),
            "start_time": _time(getattr(point, "start_time_unix_nano", None)),
            "timestamp": _time(point.time_unix_nano) or datetime.now(timezone.utc),
            "service_name": store.service_name,
            "service_instance_id": store.service_instance_id,
        }
        if isinstance(point, HistogramDataPoint):
            if not point.count:
                continue  # nothing recorded in this interval
            row.update(value=float(point.sum), count=point.count, min=point.min, max=point.max)
        elif isinstance(point, NumberDataPoint):
            if kind == "sum" and not point.value and data.aggregation_temporality is _DELTA_T:
                continue  # nothing happened in this interval
            row["value"] = float(point.value)
        else:  # pragma: no cover - the data classes above only hold these points
            continue
        rows.append(row)
    return rows


def _plain(labels: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in labels.items()}


def store_metric_reader(
    interval: float,
) -> tuple[PeriodicExportingMetricReader, StoreMetricExporter]:
    """A reader (for a MeterProvider you build) and its unbound exporter.

    ``gecko_otel.setup()`` adds one to the MeterProvider it creates when a
    store is configured; with a MeterProvider of your own, add
    ``reader`` to its ``metric_readers`` and pass ``exporter`` to the
    Monitor (``Monitor(..., metric_exporter=exporter)``) to fill
    ``performance_metrics``.
    """
    exporter = StoreMetricExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval * 1000)
    return reader, exporter
