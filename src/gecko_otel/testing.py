"""Helpers for testing your own collectors with gecko-otel.

`capture_runs` sets up real OpenTelemetry SDK providers with in-memory
exporters and a Monitor, installs that Monitor globally for the duration of
the block (so ``@collection`` functions report to it), and hands back what
was captured::

    from gecko_otel.testing import capture_runs

    def test_pool_collector_counts_records():
        with capture_runs() as captured:
            collect_pools()
        [run] = captured.runs
        assert run.status is ExecutionStatus.SUCCESS
        assert run.records_collected == 120

With pytest, the ``gecko_otel_runs`` fixture does the same (the plugin is
registered automatically when gecko-otel is installed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from gecko_otel import _guard, _state
from gecko_otel._capture.instruments import metric_views
from gecko_otel._config import MonitorConfig
from gecko_otel._monitor import Monitor
from gecko_otel._values.alerts import Alert
from gecko_otel._values.records import ExecutionRecord

__all__ = [
    "CapturedRuns",
    "FakeClock",
    "capture_runs",
    "isolated_state",
    "reset",
    "strict_internal_errors",
]


class FakeClock:
    """A clock for tests: unix seconds that move only when you say so.

    Like a computer's, it has two readings: the wall clock (call it, or read
    ``now``) and the monotonic clock (`monotonic`). `advance` moves both, as
    time passing does; `step` moves the wall clock alone, as an NTP
    correction or ``date -s`` does, to check that a step neither fires nor
    resolves an alert (the Monitor measures elapsed time on the monotonic
    reading). Setting ``now`` moves both.

    >>> clock = FakeClock()
    >>> clock.advance(hours=6)
    >>> clock.step(hours=-1)  # the wall clock goes back an hour; no time passed

    Attributes:
        now: The wall clock's reading, unix seconds.
    """

    def __init__(self, start: float | None = None) -> None:
        # Starts at the real time, so it agrees with span timestamps until moved.
        self.now = time.time() if start is None else start
        self._stepped = 0.0  # wall minus monotonic

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        """The monotonic reading: ``now`` less every `step` (so `step` leaves it alone)."""
        return self.now - self._stepped

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0) -> None:
        """Move the clock forward: both readings."""
        self.now += seconds + 60 * minutes + 3600 * hours

    def step(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0) -> None:
        """Step the wall clock alone, forward or (negative) back; the monotonic clock stays."""
        delta = seconds + 60 * minutes + 3600 * hours
        self.now += delta
        self._stepped += delta


class CapturedRuns:
    """What `capture_runs` recorded.

    Attributes:
        monitor: The Monitor runs reported to.
        span_exporter: The in-memory exporter holding exported spans.
        metric_reader: The in-memory reader for metrics.
    """

    def __init__(
        self,
        monitor: Monitor,
        span_exporter: InMemorySpanExporter,
        metric_reader: InMemoryMetricReader,
        notifications: list[Alert],
    ) -> None:
        self.monitor = monitor
        self.span_exporter = span_exporter
        self.metric_reader = metric_reader
        self._notifications = notifications

    @property
    def notifications(self) -> list[Alert]:
        """Alert notifications delivered so far, oldest first (waits for queued ones)."""
        self.monitor.force_flush(5_000)
        return list(self._notifications)

    @property
    def runs(self) -> list[ExecutionRecord]:
        """Finished runs, oldest first."""
        return list(reversed(self.monitor.history()))

    def runs_of(self, collector_type: str) -> list[ExecutionRecord]:
        """Finished runs of one collector, oldest first."""
        return list(reversed(self.monitor.history(collector_type)))

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """Exported (sampled) spans, in the order they ended."""
        return self.span_exporter.get_finished_spans()

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Collect metrics now: ``{name: [(attributes, point), ...]}``.

        ``point`` is the value for sums and gauges, and the data point itself
        for histograms (with ``count``, ``sum``, ``bucket_counts``, ...).
        """
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.metric_reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points = out.setdefault(metric.name, [])
                    for point in metric.data.data_points:
                        value = getattr(point, "value", point)
                        points.append((dict(point.attributes or {}), value))
        return out

    def clear(self) -> None:
        """Forget exported spans (history is kept by the Monitor)."""
        self.span_exporter.clear()


@contextmanager
def capture_runs(
    config: MonitorConfig | None = None,
    *,
    sampler: Sampler | None = None,
    clock: Callable[[], float] | None = None,
    watchdog: bool = True,
) -> Iterator[CapturedRuns]:
    """Capture every collection run in the block with real, in-memory OTel providers.

    Alerts are captured too: ``captured.notifications`` lists every alert
    notification handlers would have received.

    Args:
        config: Monitor configuration (defaults apply when omitted).
        sampler: Trace sampler of the provider (to test sampled-out runs).
        clock: Unix time for health and alerts (a `FakeClock` lets a
            test move time without sleeping).
        watchdog: Run the watchdog thread; with False call
            ``captured.monitor.evaluate()`` to evaluate time-based rules.

    The previous global Monitor is restored afterwards and everything created
    here is shut down.
    """
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader],
        shutdown_on_exit=False,
        views=metric_views(config if config is not None else MonitorConfig()),
    )
    notifications: list[Alert] = []
    monitor = Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=config,
        alert_handlers=[notifications.append],
        owned_providers=[tracer_provider, meter_provider],
        clock=clock,
        watchdog=watchdog,
    )
    previous = _state.install(monitor)
    try:
        yield CapturedRuns(monitor, exporter, reader, notifications)
    finally:
        _state.install(previous, arm=False)
        monitor.shutdown()


def reset() -> None:
    """Forget gecko-otel's process-wide state, as a fresh interpreter has it.

    The global Monitor (from ``setup()``) is shut down and uninstalled, and the
    expectations that ``@collection(every=..., cron=...)`` declared are
    forgotten. Call it between tests that call ``setup()``.
    """
    current = _state.monitor()
    _state.reset()
    if isinstance(current, Monitor):
        current.shutdown()


@contextmanager
def isolated_state() -> Iterator[None]:
    """Undo, on exit, what the block did to the process-wide state.

    The global Monitor installed before the block is put back, and the
    expectations declared inside are forgotten (Monitors the block created are
    not shut down: that stays the block's job).
    """
    saved = _state.snapshot()
    try:
        yield
    finally:
        _state.restore(saved)


@contextmanager
def strict_internal_errors(strict: bool = True) -> Iterator[None]:
    """Make gecko-otel re-raise its own internal errors inside the block.

    In production a bug inside gecko-otel is logged and counted, never raised
    into a collector. In your tests you may prefer it to fail loudly: inside
    this block the guard re-raises after logging (gecko-otel's own test suite
    runs this way). ``strict=False`` turns it off for a block.
    """
    previous = _guard.set_strict(strict)
    try:
        yield
    finally:
        _guard.set_strict(previous)
