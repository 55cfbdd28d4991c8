"""What @collection costs per call, against hand-written OpenTelemetry instrumentation.

In one process, interleaved in alternating batches so drift hits all three
equally, this times:

  (a) a bare function;
  (b) the same function with hand-written instrumentation: a span carrying the
      collector-type attribute with OK status, a duration histogram record and
      a run counter add, on a BatchSpanProcessor with a no-op exporter and an
      in-memory metric reader;
  (c) the same function under @gecko_otel.collection with the whole pipeline
      a user gets (BatchSpanProcessor with a no-op exporter, in-memory metric
      reader, Monitor with history, health evaluation and the alert engine).

It prints microseconds per call (median over rounds), the overhead ratio
(c)/(b) with the bare time subtracted (median and spread of per-round
ratios), the memory growth over 200,000 further runs, and what the
APScheduler plugin adds to one scheduled job execution (benchmarks/scheduled.py).

With ``--parts`` it prints instead what each part of (c)'s added cost is:
the run pipeline (history, health, alerts) and the exemplar switched off in
turn, and both.

Run: ``make bench`` or ``python benchmarks/overhead.py [--batches N] [--calls N] [--parts]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

import gecko_otel


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def work() -> int:
    return 42


def make_handwritten() -> tuple[Callable[[], int], list[object]]:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = tp.get_tracer("handwritten")
    meter = mp.get_meter("handwritten")
    duration = meter.create_histogram("collection.duration", unit="s")
    runs = meter.create_counter("collection.runs")
    attributes = {"gecko.collector.type": "pool_collector"}

    def handwritten() -> int:
        start = time.perf_counter()
        with tracer.start_as_current_span("pool_collector", attributes=attributes) as span:
            result = work()
            span.set_status(Status(StatusCode.OK))
        duration.record(time.perf_counter() - start, attributes)
        runs.add(1, attributes)
        return result

    return handwritten, [tp, mp]


def make_instrumented() -> tuple[Callable[[], int], gecko_otel.Monitor, list[object]]:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    monitor = gecko_otel.Monitor(tracer_provider=tp, meter_provider=mp)

    @gecko_otel.collection("pool_collector", monitor=monitor)
    def instrumented() -> int:
        return work()

    return instrumented, monitor, [tp, mp]


class _NoExemplar:
    """The duration histogram, recorded outside the run's context (no exemplar)."""

    def __init__(self, histogram: Any) -> None:
        self._histogram = histogram

    def record(self, value: float, attributes: Any, context: object = None) -> None:
        self._histogram.record(value, attributes)


def make_part_switched_off(part: str) -> Callable[[], int]:
    """@collection with one part switched off (``--parts``), to see what each costs."""
    instrumented, monitor, _ = make_instrumented()
    if part in ("pipeline", "both"):  # finished runs reach no history, health or alerts
        monitor._processor._on_record = lambda run: None  # noqa: SLF001
    if part in ("exemplar", "both"):
        instr = monitor.instrumentation
        instr.duration = _NoExemplar(instr.duration)  # type: ignore[assignment]
    return instrumented


def parts(batches: int, calls: int) -> None:
    """What each part of @collection's added cost is, as a ratio to hand-written."""
    handwritten, _ = make_handwritten()
    instrumented, _, _ = make_instrumented()
    candidates: dict[str, Callable[[], object]] = {
        "bare": work,
        "handwritten": handwritten,
        "all": instrumented,
        "no pipeline": make_part_switched_off("pipeline"),
        "no exemplar": make_part_switched_off("exemplar"),
        "neither": make_part_switched_off("both"),
    }
    samples = run_rounds(candidates, batches, calls)
    ratio = {
        name: statistics.median(
            (o - b) / (h - b)
            for o, h, b in zip(samples[name], samples["handwritten"], samples["bare"], strict=True)
        )
        for name in candidates
    }
    print(f"@collection's added cost, x hand-written ({batches} rounds x {calls}), with")
    print(f"  everything on                                     {ratio['all']:.2f}")
    print(f"  the run pipeline off (history, health, alerts)    {ratio['no pipeline']:.2f}")
    print(f"  the exemplar off (duration outside the run's ctx) {ratio['no exemplar']:.2f}")
    print(f"  both off (the run, its span with 3 more attributes) {ratio['neither']:.2f}")


def run_rounds(
    candidates: dict[str, Callable[[], object]], batches: int, calls: int
) -> dict[str, list[float]]:
    """Microseconds per call of each candidate, one sample per round, interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for func in candidates.values():  # warm up caches and lazy imports
        time_batch(func, 500)
    gc.collect()
    for i in range(batches):
        order = list(candidates.items())
        if i % 2:
            order.reverse()
        for name, func in order:
            samples[name].append(time_batch(func, calls))
    return samples


def time_batch(func: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--memory-runs", type=int, default=200_000)
    parser.add_argument(
        "--parts", action="store_true", help="only: what each part of the added cost is"
    )
    args = parser.parse_args()
    if args.parts:
        parts(args.batches, args.calls)
        return

    handwritten, hw_providers = make_handwritten()
    instrumented, monitor, providers = make_instrumented()
    candidates = {"bare": work, "handwritten": handwritten, "gecko_otel": instrumented}
    samples = run_rounds(candidates, args.batches, args.calls)

    bare = statistics.median(samples["bare"])
    hw = statistics.median(samples["handwritten"])
    ours = statistics.median(samples["gecko_otel"])
    # One ratio per round (neighbouring batches), so drift cancels out.
    ratios = sorted(
        (o - b) / (h - b)
        for o, h, b in zip(
            samples["gecko_otel"], samples["handwritten"], samples["bare"], strict=True
        )
    )
    q1, q3 = ratios[len(ratios) // 4], ratios[3 * len(ratios) // 4]
    print(f"per call (median of {args.batches} rounds x {args.calls} calls):")
    print(f"  (a) bare function                {bare:8.2f} us")
    print(f"  (b) hand-written OTel            {hw:8.2f} us")
    print(f"  (c) @gecko_otel.collection       {ours:8.2f} us")
    print(
        f"overhead ratio (c)/(b), bare time subtracted: median {statistics.median(ratios):.2f} "
        f"(interquartile {q1:.2f}-{q3:.2f}); target <= 1.10, goal <= 1.0"
    )

    # Memory: history is bounded per collector, so the second half of the runs
    # must add (next to) nothing.
    for _ in range(5_000):
        instrumented()
    monitor.force_flush()
    gc.collect()
    tracemalloc.start()
    marks = [tracemalloc.get_traced_memory()[0]]
    half = args.memory_runs // 2
    for _ in range(2):
        for _ in range(half):
            instrumented()
        monitor.force_flush()
        gc.collect()
        marks.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    held = len(monitor.history("pool_collector"))
    total = monitor.statistics("pool_collector").total_executions
    print(
        f"memory growth: {(marks[1] - marks[0]) / 1024:+.1f} KiB over the first {half:,} runs, "
        f"{(marks[2] - marks[1]) / 1024:+.1f} KiB over the next {half:,}"
    )
    print(f"history holds {held} records; statistics count {total:,} runs")
    print(f"internal errors: {gecko_otel.internal_error_count()}")

    try:  # a scheduled job, when the APScheduler plugin's extra is installed
        import scheduled
    except ImportError:
        print("scheduled job: skipped (pip install 'gecko-otel[apscheduler]')")
    else:
        r = scheduled.measure(rounds=20, calls=500)
        print(
            f"scheduled job (APScheduler run_job): plain {r.plain:.2f} us, "
            f"instrumented {r.scheduled:.2f} us (+{r.scheduled_added:.2f} us per execution, "
            f"{r.scheduled_added / r.decorated_added:.2f}x what @collection adds)"
            + ("" if r.honest else "; INVALID: executions missed or unrecorded")
        )
    monitor.shutdown()
    for provider in providers + hw_providers:
        provider.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
