"""What the APScheduler plugin adds to one scheduled job execution, against what
``@collection`` adds to one call.

In one process, interleaved in alternating rounds so drift hits all equally:

  (a) a bare function, and the same function under ``@gecko_otel.collection``,
      plain and recording what a scheduled run records beyond it (the job's
      span attributes and its schedule expectation);
  (b) APScheduler's own job-running function (``run_job``, as the thread pool
      executor calls it for each due run) for the same job on two schedulers:
      one plain, one instrumented with ``instrument_scheduler``.

Both instrumented cases report to one Monitor on the full pipeline
(BatchSpanProcessor with a no-op exporter, in-memory metric reader, history,
health and alerts). It prints microseconds per execution, the cost each path
adds, and their ratio (target: the scheduled path adds at most what the
decorator adds). It counts what ``run_job`` reported (executed or missed) and
the runs the Monitor recorded, and fails if any execution was missed instead
of run or any run went unrecorded: a job whose run time is past its
``misfire_grace_time`` is only reported missed, which would time nothing.

Run: ``python benchmarks/scheduled.py [--rounds N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors import pool
from apscheduler.schedulers.background import BackgroundScheduler
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import gecko_otel
from gecko_otel import semconv
from gecko_otel._capture.wrappers import Target, wrap_function
from gecko_otel.scheduling._apscheduler_hooks import _iso
from gecko_otel.scheduling.apscheduler import instrument_scheduler


class NoOpExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def collect_pools() -> int:
    return 42


@dataclass
class Result:
    """Medians in microseconds per execution, and what was counted."""

    bare: float
    decorated: float
    decorated_alike: float
    plain: float
    scheduled: float
    events: Counter[str]
    executions: int
    recorded: int

    @property
    def scheduled_added(self) -> float:
        return self.scheduled - self.plain

    @property
    def decorated_added(self) -> float:
        return self.decorated - self.bare

    @property
    def alike_added(self) -> float:
        return self.decorated_alike - self.bare

    @property
    def honest(self) -> bool:
        """Every scheduled execution ran (none missed) and became one recorded run."""
        return (
            self.events["missed"] == 0
            and self.events["executed"] == self.executions
            and self.recorded == self.executions
        )


def job_runner(scheduler: Any, events: Counter[str] | None) -> Callable[[], object]:
    # No misfire grace: a run time in the past still runs, so every call executes the job.
    job = scheduler.add_job(
        collect_pools, "interval", hours=1, id="pool_collector", misfire_grace_time=None
    )
    run_times = [datetime.now(timezone.utc)]
    names = {EVENT_JOB_EXECUTED: "executed", EVENT_JOB_MISSED: "missed"}

    def execute() -> object:
        # As the thread pool executor does for each due run (looked up each
        # time, so the plugin's replacement is used when installed).
        out = pool.run_job(job, "default", run_times, "apscheduler.executors.default")
        if events is not None:
            for event in out:
                events[names.get(event.code, "other")] += 1
        return out

    return execute


def measure(rounds: int, calls: int) -> Result:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    monitor = gecko_otel.Monitor(tracer_provider=tracer_provider, meter_provider=meter_provider)
    decorated = gecko_otel.collection("pool_decorated", monitor=monitor)(collect_pools)
    # What a scheduled run records beyond a @collection call: the job's span attributes
    # (faas.*, schedule.*, code.function.name) and its schedule expectation.
    alike_target = Target(
        "pool_alike",
        None,
        None,
        monitor,
        {
            semconv.FAAS_TRIGGER: "timer",
            semconv.SCHEDULE_TRIGGER: "interval[1:00:00]",
            semconv.SCHEDULE_JOB_ID: "pool_alike",
            semconv.CODE_FUNCTION_NAME: f"{__name__}.collect_pools",
        },
    )
    scheduled_at = datetime.now(timezone.utc)
    alike = wrap_function(
        collect_pools, alike_target, lambda: {semconv.FAAS_TIME: _iso(scheduled_at)}
    )
    monitor.expect("pool_alike", every=3600)

    plain = BackgroundScheduler(timezone=timezone.utc)
    instrumented = BackgroundScheduler(timezone=timezone.utc)
    instrument_scheduler(instrumented, monitor=monitor)
    for scheduler in (plain, instrumented):
        scheduler.start(paused=True)  # jobs fully set up; nothing runs on its own
    events: Counter[str] = Counter()
    candidates: dict[str, Callable[[], object]] = {
        "bare": collect_pools,
        "decorated": decorated,
        "decorated_alike": alike,
        "plain": job_runner(plain, None),
        "scheduled": job_runner(instrumented, events),
    }
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for run in candidates.values():  # warm up
        for _ in range(200):
            run()
    for i in range(rounds):
        order = list(candidates.items())
        if i % 2:
            order.reverse()
        for name, run in order:
            start = time.perf_counter()
            for _ in range(calls):
                run()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    recorded = monitor.statistics("pool_collector").total_executions
    for scheduler in (plain, instrumented):
        scheduler.shutdown(wait=False)
    monitor.shutdown()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return Result(**medians, events=events, executions=200 + rounds * calls, recorded=recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    r = measure(args.rounds, args.calls)
    print(f"per execution (median of {args.rounds} rounds x {args.calls}):")
    print(f"  bare function                       {r.bare:8.2f} us")
    print(f"  @gecko_otel.collection              {r.decorated:8.2f} us")
    print(f"  APScheduler run_job, plain          {r.plain:8.2f} us")
    print(f"  APScheduler run_job, instrumented   {r.scheduled:8.2f} us")
    print(f"  @collection recording as much       {r.decorated_alike:8.2f} us")
    print(f"added by @collection                  {r.decorated_added:8.2f} us")
    print(f"added by @collection recording as much{r.alike_added:8.2f} us")
    print(f"added by the scheduler plugin         {r.scheduled_added:8.2f} us")
    print(
        f"scheduled/decorated added cost: {r.scheduled_added / r.decorated_added:.2f} "
        "(target <= 1.0)"
    )
    print(
        "scheduled/decorated recording as much (5 more span attributes, the schedule "
        f"expectation): {r.scheduled_added / r.alike_added:.2f}"
    )
    print(
        f"scheduled executions: {r.executions:,}; run_job reported {r.events['executed']:,} "
        f"executed, {r.events['missed']:,} missed; the Monitor recorded {r.recorded:,} runs; "
        f"internal errors: {gecko_otel.internal_error_count()}"
    )
    if not r.honest:
        print("FAILED: an execution was missed or went unrecorded; the timings are not runs")
        sys.exit(1)


if __name__ == "__main__":
    main()
