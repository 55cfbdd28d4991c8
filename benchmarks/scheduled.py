"""What the APScheduler plugin adds to one scheduled job execution.

Times APScheduler's own job-running function (``run_job``, as the thread
pool executor calls it for each due run) for the same job on two schedulers
in one process, interleaved: one plain, one instrumented with
``instrument_scheduler`` on the full pipeline (BatchSpanProcessor with a
no-op exporter, in-memory metric reader, Monitor with history, health and
alerts). Prints microseconds per execution and the difference, which is the
cost of the collection run around the job.

Run: ``python benchmarks/scheduled.py [--rounds N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from apscheduler.executors import pool
from apscheduler.schedulers.background import BackgroundScheduler
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import gecko_otel
from gecko_otel.scheduling.apscheduler import instrument_scheduler


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def collect_pools() -> int:
    return 42


def job_runner(scheduler: Any) -> Callable[[], object]:
    job = scheduler.add_job(collect_pools, "interval", hours=1, id="pool_collector")
    run_times = [datetime.now(timezone.utc)]

    def execute() -> object:
        # As the thread pool executor does for each due run (looked up each
        # time, so the plugin's replacement is used when installed).
        return pool.run_job(job, "default", run_times, "apscheduler.executors.default")

    return execute


def measure(rounds: int, calls: int) -> tuple[float, float, int]:
    """Median microseconds per execution: (plain, instrumented, runs recorded)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    monitor = gecko_otel.Monitor(tracer_provider=tracer_provider, meter_provider=meter_provider)

    plain = BackgroundScheduler(timezone=timezone.utc)
    instrumented = BackgroundScheduler(timezone=timezone.utc)
    instrument_scheduler(instrumented, monitor=monitor)
    for scheduler in (plain, instrumented):
        scheduler.start(paused=True)  # jobs fully set up; nothing runs on its own
    runners = {"plain": job_runner(plain), "instrumented": job_runner(instrumented)}

    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(200):
            run()
    for i in range(rounds):
        order = list(runners.items())
        if i % 2:
            order.reverse()
        for name, run in order:
            start = time.perf_counter()
            for _ in range(calls):
                run()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    runs = monitor.statistics("pool_collector").total_executions
    for scheduler in (plain, instrumented):
        scheduler.shutdown(wait=False)
    monitor.shutdown()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return statistics.median(samples["plain"]), statistics.median(samples["instrumented"]), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    plain_us, ours_us, runs = measure(args.rounds, args.calls)
    print(f"one scheduled job execution (median of {args.rounds} rounds x {args.calls}):")
    print(f"  APScheduler run_job, plain          {plain_us:8.2f} us")
    print(f"  APScheduler run_job, instrumented   {ours_us:8.2f} us")
    print(f"  the collection run around the job   {ours_us - plain_us:8.2f} us")
    print(f"runs recorded: {runs:,}; internal errors: {gecko_otel.internal_error_count()}")


if __name__ == "__main__":
    main()
