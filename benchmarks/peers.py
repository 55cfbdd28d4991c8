"""gecko-otel beside what people would otherwise pick, per call, in one process.

Candidates, each wrapping the same trivial collector function:

  bare                the function alone;
  otel-span           a hand-written OpenTelemetry span (1 attribute, OK status);
  hand-written        that span plus a duration histogram record and a run counter add;
  gecko-otel          @gecko_otel.collection, the whole pipeline in memory (span with 4
                      attributes, the duration histogram with its exemplar, history,
                      health rules, baselines, alert engine);
  gecko-otel+sqlite   the same with a SQLite store (rows written on the writer thread);
  scheduled           one APScheduler job execution instrumented by instrument_scheduler,
                      minus the same execution on a plain scheduler (run_job);
  logfire             Pydantic Logfire's @logfire.instrument, nothing sent
                      (send_to_logfire=False, console=False): one span with its message
                      template and code attributes;
  sentry-crons        Sentry's crons @monitor with an in-memory transport: two check-in
                      envelopes per call (in progress, then ok), no span.

Tracer providers use a BatchSpanProcessor with a no-op exporter. Rounds are
interleaved (order reversed every other round) so drift hits all candidates
alike. It prints the median microseconds per call with the bare time
subtracted, and the ratio to hand-written. Peers come from the `bench`
dependency group (`pip install --group bench`); a missing one is skipped and said.

Run: ``python benchmarks/peers.py [--rounds N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

import gecko_otel
from overhead import NoOpExporter, make_handwritten, time_batch  # the same baseline as overhead.py


def collect_pools() -> int:
    return 42


def providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def otel_span() -> Callable[[], int]:
    tracer = providers()[0].get_tracer("handwritten")
    attributes = {"gecko.collector.type": "pool_collector"}

    def call() -> int:
        with tracer.start_as_current_span("pool_collector", attributes=attributes) as span:
            result = collect_pools()
            span.set_status(Status(StatusCode.OK))
        return result

    return call


def gecko(
    database: str | None, monitors: list[gecko_otel.Monitor]
) -> tuple[Callable[[], int], gecko_otel.Monitor]:
    tracer_provider, meter_provider = providers()
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider, meter_provider=meter_provider, database=database
    )
    monitors.append(monitor)
    return gecko_otel.collection("pool_collector", monitor=monitor)(collect_pools), monitor


def scheduled(
    monitors: list[gecko_otel.Monitor],
) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], str | None]]:
    """(plain, instrumented) run_job calls for one job that really runs each time,
    and a check that every instrumented call ran and was recorded (else why not)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from gecko_otel.scheduling.apscheduler import instrument_scheduler
    from scheduled import job_runner

    tracer_provider, meter_provider = providers()
    monitor = gecko_otel.Monitor(tracer_provider=tracer_provider, meter_provider=meter_provider)
    monitors.append(monitor)
    plain, instrumented = (BackgroundScheduler(timezone=timezone.utc) for _ in range(2))
    instrument_scheduler(instrumented, monitor=monitor)
    for scheduler in (plain, instrumented):
        scheduler.start(paused=True)
    events: Counter[str] = Counter()
    run = job_runner(instrumented, events)
    calls = 0

    def counted() -> Any:
        nonlocal calls
        calls += 1
        return run()

    def check() -> str | None:
        recorded = monitor.statistics("pool_collector").total_executions
        if events["missed"] or events["executed"] != calls or recorded != calls:
            return (
                f"scheduled: {calls} calls, {events['executed']} executed, "
                f"{events['missed']} missed, {recorded} recorded"
            )
        return None

    return job_runner(plain, None), counted, check


def logfire_instrument() -> Callable[[], int] | str:
    try:
        import logfire
    except ImportError:
        return "logfire is not installed (pip install --group bench)"
    logfire.configure(
        send_to_logfire=False,
        console=False,
        inspect_arguments=False,
        additional_span_processors=[BatchSpanProcessor(NoOpExporter())],
    )
    return logfire.instrument("collect pools")(collect_pools)


def sentry_monitor() -> Callable[[], int] | str:
    try:
        import sentry_sdk
        from sentry_sdk.crons import monitor
        from sentry_sdk.transport import Transport
    except ImportError:
        return "sentry-sdk is not installed (pip install --group bench)"

    class InMemoryTransport(Transport):
        def __init__(self, options: Any = None) -> None:
            super().__init__(options)
            self.envelopes = 0

        def capture_envelope(self, envelope: Any) -> None:
            self.envelopes += 1

    # Only what crons need: no auto-enabled integrations patching the process.
    sentry_sdk.init(
        dsn="https://public@sentry.invalid/1",
        transport=InMemoryTransport,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    return monitor(monitor_slug="pool-collector")(collect_pools)


#: What each candidate does per call.
WHAT = {
    "otel-span": "1 span, 1 attribute",
    "hand-written": "1 span, 1 attribute; 1 histogram record, 1 counter add",
    "gecko-otel": "1 span, 4 attributes; 1 histogram record with exemplar; history, health, alerts",
    "gecko-otel+sqlite": "the same, and one row written (the writer's time included)",
    "scheduled": "as gecko-otel, span with 5 faas/schedule attributes more",
    "logfire": "1 span, 6 attributes (message and template, span type, code location)",
    "sentry-crons": "2 check-in envelopes (in progress, ok), no span",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()

    monitors: list[gecko_otel.Monitor] = []
    workdir = tempfile.TemporaryDirectory()
    database = f"sqlite:///{Path(workdir.name) / 'runs.db'}"
    plain_job, scheduled_job, check_scheduled = scheduled(monitors)
    in_memory, _ = gecko(None, monitors)
    with_sqlite, sqlite_monitor = gecko(database, monitors)
    candidates: dict[str, Callable[[], Any]] = {
        "bare": collect_pools,
        "otel-span": otel_span(),
        "hand-written": make_handwritten()[0],
        "gecko-otel": in_memory,
        "gecko-otel+sqlite": with_sqlite,
        "plain run_job": plain_job,
        "scheduled": scheduled_job,
    }
    skipped = []
    for name, made in (("logfire", logfire_instrument()), ("sentry-crons", sentry_monitor())):
        if isinstance(made, str):
            skipped.append(f"{name}: {made}")
        else:
            candidates[name] = made
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for func in candidates.values():  # warm up
        time_batch(func, 300)
    for i in range(args.rounds):
        order = list(candidates.items())
        if i % 2:
            order.reverse()
        for name, func in order:
            if name == "gecko-otel+sqlite":  # charged with writing its runs, too
                start = time.perf_counter()
                time_batch(func, args.calls)
                sqlite_monitor.force_flush()
                samples[name].append((time.perf_counter() - start) / args.calls * 1e6)
            else:
                samples[name].append(time_batch(func, args.calls))

    median = {name: statistics.median(values) for name, values in samples.items()}
    added = {name: median[name] - median["bare"] for name in candidates if name != "bare"}
    added["scheduled"] = median["scheduled"] - median["plain run_job"]
    del added["plain run_job"]
    baseline = added["hand-written"]
    print(f"per call, bare time subtracted (median of {args.rounds} rounds x {args.calls}):")
    print(f"  {'candidate':<18} {'us/call':>8} {'x hand-written':>15}  per call")
    for name, cost in added.items():
        print(f"  {name:<18} {cost:8.2f} {cost / baseline:15.2f}  {WHAT[name]}")
    print(f"  (bare function: {median['bare']:.2f} us; scheduled is run_job instrumented")
    print(f"   minus plain run_job, {median['plain run_job']:.2f} us)")
    for line in skipped:
        print(f"skipped {line}")
    invalid = check_scheduled()
    for monitor in monitors:
        monitor.shutdown()
    workdir.cleanup()
    if invalid is not None:
        print(f"FAILED: {invalid}: the scheduled figure timed no runs")
        sys.exit(1)


if __name__ == "__main__":
    main()
