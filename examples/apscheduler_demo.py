"""GeckoTerminal-style collectors on APScheduler, monitored with one line.

An ``AsyncIOScheduler`` runs five collectors for a few seconds; their code
knows nothing of gecko-otel. ``instrument_scheduler(scheduler)`` turns every
job execution into a collection run (span, metrics, history, health) and
each job's trigger into a schedule expectation. What happens:

* ``pool_collector`` (coroutine, every second) succeeds with 80-120 records;
* ``ohlcv_collector`` (coroutine, every second) fails every time: after three
  failures in a row it is critical and an alert fires;
* ``trade_collector`` (coroutine, every second) takes 2.5 s, so with
  ``max_instances=1`` APScheduler skips runs: recorded as ``skipped``, and
  the ``overlap`` alert fires;
* ``token_collector`` (plain function, on the loop's thread pool) runs twice
  and is then paused, as a job can silently be: its expectation (every
  second, 1 s grace) makes the watchdog raise ``missed_run``;
* ``cleanup`` (cron ``* * * * *``) shows a cron expectation; it runs only if
  a minute boundary passes during the demo.

At the end the program prints what the monitor saw, and exits with status 1
if any of the outcomes above is missing (so CI can run it). It takes about
six and a half seconds. Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` to also send the spans
and metrics to an OpenTelemetry Collector.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler

import gecko_otel
from gecko_otel.scheduling.apscheduler import instrument_scheduler

DEMO_SECONDS = 6.5  # between two ticks, so only the long trade run is cut short
PAUSE_AFTER = 2.3  # seconds: token_collector has run twice by then
rng = random.Random(7)


@dataclass
class CollectionResult:
    """What the GeckoTerminal collector's collectors return."""

    success: bool
    records_collected: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


async def collect_pools() -> CollectionResult:
    await asyncio.sleep(rng.uniform(0.01, 0.05))  # the HTTP call
    return CollectionResult(success=True, records_collected=rng.randint(80, 120))


async def collect_ohlcv() -> CollectionResult:
    await asyncio.sleep(0.01)
    raise ConnectionError("api.geckoterminal.com answered 503")


async def collect_trades() -> CollectionResult:
    await asyncio.sleep(2.5)  # a slow backfill: longer than its 1 s interval
    return CollectionResult(success=True, records_collected=500)


def collect_tokens() -> CollectionResult:
    time.sleep(0.01)  # blocking client: runs on the event loop's thread pool
    return CollectionResult(success=True, records_collected=12, warnings=["2 tokens unlisted"])


async def cleanup() -> None:
    await asyncio.sleep(0.01)


def on_alert(alert: gecko_otel.Alert) -> None:
    """An alert handler: any callable taking an Alert (called on gecko-otel's worker)."""
    print(
        f"  [alert {alert.notification}] {alert.level.value:<8} "
        f"{alert.collector_type}/{alert.rule}: {alert.message}"
    )


async def run_scheduler() -> None:
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(collect_pools, "interval", seconds=1, id="pool_collector")
    scheduler.add_job(collect_ohlcv, "interval", seconds=1, id="ohlcv_collector")
    # A grace longer than the overrun keeps this one about overlap, not lateness.
    scheduler.add_job(
        collect_trades,
        "interval",
        seconds=1,
        id="trade_collector",
        max_instances=1,
        misfire_grace_time=5,
    )
    tokens = scheduler.add_job(
        collect_tokens, "interval", seconds=1, id="token_collector", misfire_grace_time=1
    )
    scheduler.add_job(cleanup, "cron", minute="*", id="cleanup", misfire_grace_time=30)

    instrument_scheduler(scheduler)  # the one line
    scheduler.start()
    print(f"Running five collectors for {DEMO_SECONDS:g} s ...")
    await asyncio.sleep(PAUSE_AFTER)
    tokens.pause()
    print("  token_collector paused: no error, no log line; only its expectation notices")
    await asyncio.sleep(DEMO_SECONDS - PAUSE_AFTER)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.1)  # the running trade run is cancelled: let it finish


def report(monitor: gecko_otel.Monitor, notified: list[gecko_otel.Alert]) -> list[str]:
    """Print what the monitor saw; return the expected outcomes that are missing."""
    print("\nHealth:")
    for name, health in sorted(monitor.health().items()):
        score = "-" if health.health_score is None else f"{health.health_score:.0f}"
        print(f"  {name:<16} {health.status.value:<8} score {score:>3}  {'; '.join(health.issues)}")

    print("\nRuns:")
    for name in monitor.collector_types():
        stats = monitor.statistics(name)
        statuses = [r.status.value for r in reversed(monitor.history(name))]
        print(
            f"  {name:<16} {stats.total_executions:>2} runs, "
            f"{stats.total_records_collected:>4} records: {' '.join(statuses)}"
        )

    print("\nExpectations:")
    for name, expectation in sorted(monitor.export()["expectations"].items()):
        schedule = (
            f"cron {expectation['cron']!r}"
            if expectation["cron"]
            else f"every {expectation['every']:g} s"
        )
        print(f"  {name:<16} {schedule}, grace {expectation['grace']:g} s")

    print("\nActive alerts:")
    for alert in monitor.alerts():
        print(f"  {alert.level.value:<8} {alert.collector_type}/{alert.rule}: {alert.message}")

    fired = {(a.collector_type, a.rule) for a in notified}
    missing = []
    if not monitor.history("ohlcv_collector", status="failure"):
        missing.append("a failed ohlcv_collector run")
    if not monitor.history("trade_collector", status="skipped"):
        missing.append("a skipped trade_collector run")
    for wanted in (
        ("ohlcv_collector", "consecutive_failures"),
        ("trade_collector", "overlap"),
        ("token_collector", "missed_run"),
    ):
        if wanted not in fired:
            missing.append(f"the {wanted[1]} alert of {wanted[0]}")
    return missing


def main() -> int:
    # APScheduler logs every failure with its traceback; the monitor's
    # report below tells the same story.
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    notified: list[gecko_otel.Alert] = []

    def handler(alert: gecko_otel.Alert) -> None:
        notified.append(alert)
        on_alert(alert)

    monitor = gecko_otel.setup(
        service_name="gecko-collector-demo",
        # Evaluate missed runs twice a second, so the demo need not wait long.
        config=gecko_otel.MonitorConfig(watchdog_interval=0.5),
        alert_handlers=[handler],
    )
    try:
        asyncio.run(run_scheduler())
        monitor.force_flush(5_000)  # deliver queued alert notifications
        missing = report(monitor, notified)
    finally:
        monitor.shutdown()
    if missing:
        print("\nMissing: " + "; ".join(missing), file=sys.stderr)
        return 1
    print("\nAll expected outcomes seen.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
