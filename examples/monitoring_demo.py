"""A GeckoTerminal-style collector program, instrumented with gecko-otel.

Five collectors run a few rounds: pools (async, per network), OHLCV (sync,
sometimes partial when candles are missing), trades (an async generator
streaming pages, rate-limited now and then), prices, whose upstream API
goes down for three rounds and comes back, and new pools, whose upstream
starts returning almost nothing while every run still "succeeds". Every run
becomes a span and metrics, lands in execution history and feeds health:
the price collector turns critical, an alert fires through the handler, and
it resolves once the collector recovers; the new-pools collector's baseline
(what it usually collects, learned from its own runs) catches the collapse
that no fixed threshold sees (``records_anomaly``). At the end the program
prints what the monitor saw.

History, alerts and per-collector figures are kept in a SQLite file
(``gecko_otel_demo.db``, or ``GECKO_OTEL_DATABASE_URL``): run the demo again
and its tables include the runs of every earlier run.

Run it with ``make demo``. Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` to also send
the spans and metrics to an OpenTelemetry Collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import gecko_otel

NETWORKS = ("solana", "eth", "base")
rng = random.Random(7)


@dataclass
class CollectionResult:
    """What the GeckoTerminal collector's collectors return."""

    success: bool
    records_collected: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RateLimited(Exception):
    """The API answered 429."""


@gecko_otel.collection("pool_collector", metadata={"source": "geckoterminal"})
async def collect_pools(network: str) -> CollectionResult:
    run = gecko_otel.current_run()
    if run is not None:
        run.set_metadata("network", network)
    await asyncio.sleep(rng.uniform(0.01, 0.05))  # the HTTP call
    return CollectionResult(success=True, records_collected=rng.randint(80, 120))


@gecko_otel.collection("ohlcv_collector", metadata={"timeframe": "1h"})
def collect_ohlcv(pool_ids: list[str]) -> int:
    run = gecko_otel.current_run()
    candles = 0
    time.sleep(0.004)  # the database write
    for pool in pool_ids:
        if rng.random() < 0.08 and run is not None:
            run.warn(f"no candles for {pool}")
            continue
        candles += 24
    if run is not None:
        run.add_records(candles)
    return candles


@gecko_otel.collection("trade_collector")
async def stream_trades(pages: int) -> AsyncIterator[list[int]]:
    run = gecko_otel.current_run()
    for page in range(pages):
        await asyncio.sleep(0.005)
        if rng.random() < 0.06:
            raise RateLimited(f"429 on page {page}")
        trades = list(range(rng.randint(20, 50)))
        if run is not None:
            run.add_records(len(trades))
        yield trades


class UpstreamDown(Exception):
    """The price API is unreachable."""


@gecko_otel.collection("price_collector")
def collect_prices(round_number: int) -> int:
    time.sleep(0.002)
    if 1 <= round_number <= 3:  # the upstream API is down for three rounds
        raise UpstreamDown("api.geckoterminal.com: connection refused")
    run = gecko_otel.current_run()
    if run is not None:
        run.add_records(250)
    return 250


@gecko_otel.collection("new_pools_collector")
def collect_new_pools(round_number: int) -> int:
    # From round 2 the API still answers 200, but with 3 pools instead of ~480.
    found = 3 if round_number >= 2 else int(480 * rng.lognormvariate(0, 0.15))
    run = gecko_otel.current_run()
    if run is not None:
        run.add_records(found)
    return found


async def one_round(round_number: int) -> None:
    collect_new_pools(round_number)
    with contextlib.suppress(UpstreamDown):
        collect_prices(round_number)
    await asyncio.gather(*(collect_pools(n) for n in NETWORKS))
    collect_ohlcv([f"pool-{i}" for i in range(10)])
    try:
        async for _ in stream_trades(pages=3):
            pass
    except RateLimited:
        pass  # the collector's own retry logic would take over here


def print_health(monitor: gecko_otel.Monitor, when: str) -> None:
    system = monitor.system_health()
    print(f"\nHealth {when}: {system.overall_status.value}")
    for name, health in monitor.health().items():
        score = f"{health.health_score:5.1f}" if health.health_score is not None else "    -"
        issues = "; ".join(health.issues) or "-"
        print(f"  {name:<21}{health.status.value:<9} score {score}  {issues}")


def print_summary(monitor: gecko_otel.Monitor, notifications: list[gecko_otel.Alert]) -> None:
    print("\nAlert notifications (as a handler received them)")
    for alert in notifications:
        when = alert.last_notified_at or alert.fired_at
        print(
            f"  {when:%H:%M:%S}  {alert.notification.value if alert.notification else '':<9} "
            f"{alert.level.value:<8} {alert.collector_type}/{alert.rule}: {alert.message}"
        )

    print("\nCollectors")
    header = (
        f"{'collector':<21}{'runs':>5}{'ok %':>7}{'avg ms':>8}{'p95 ms':>8}{'records':>9}  last"
    )
    print(header)
    print("-" * len(header))
    for name in monitor.collector_types():
        stats = monitor.statistics(name)
        last = monitor.history(name, limit=1)[0]
        print(
            f"{name:<21}{stats.total_executions:>5}{stats.success_rate:>7.1f}"
            f"{stats.average_duration * 1000:>8.1f}{stats.p95_duration * 1000:>8.1f}"
            f"{stats.total_records_collected:>9}  {last.status.value}"
        )

    print("\nRecent runs")
    for record in monitor.history(limit=8):
        duration = f"{record.duration_seconds * 1000:6.1f} ms" if record.duration_seconds else "-"
        note = record.error_type or (record.warnings[0] if record.warnings else "")
        print(
            f"  {record.start_time:%H:%M:%S.%f}"[:-3]
            + f"  {record.collector_type:<20} {record.status.value:<8} {duration}"
            f"  {record.records_collected:>4} records  {record.execution_id[:8]}  {note}"
        )

    failures = monitor.history(status="failure", limit=3)
    if failures:
        print("\nFailed runs")
        for record in failures:
            print(
                f"  {record.start_time:%H:%M:%S}  {record.collector_type:<20} "
                f"{record.error_type}: {record.error_message}  (trace {record.trace_id})"
            )

    totals = monitor.statistics()
    print(
        f"\n{totals.total_executions} runs, {totals.success_rate:.1f} % successful "
        f"(partial counts), {totals.failed_executions} failed, "
        f"{totals.total_records_collected} records."
    )


DATABASE_URL = os.environ.get("GECKO_OTEL_DATABASE_URL", "sqlite:///gecko_otel_demo.db")


def print_store(monitor: gecko_otel.Monitor) -> None:
    before = monitor.statistics()
    print(f"Store: {DATABASE_URL}")
    if before.total_executions and before.last_execution is not None:
        print(
            f"  {before.total_executions} runs from earlier demo runs, the last at "
            f"{before.last_execution:%Y-%m-%d %H:%M:%S} UTC; the tables below include them."
        )
    else:
        print("  empty: this is the first demo run (run it again to see history accumulate).")


async def main() -> None:
    notifications: list[gecko_otel.Alert] = []
    monitor = gecko_otel.setup(
        service_name="gecko-collector-demo",
        alert_handlers=[notifications.append],  # any callable taking an Alert
        database_url=DATABASE_URL,
    )
    print_store(monitor)
    for _ in range(monitor.config.anomaly_warmup_runs):  # earlier, ordinary runs
        collect_new_pools(0)
    for round_number in range(6):
        await one_round(round_number)
        if round_number == 3:
            monitor.force_flush()
            print_health(monitor, "after the price API was down for three rounds")
    monitor.force_flush()  # deliver queued notifications
    print_health(monitor, "at the end")
    print_summary(monitor, notifications)
    monitor.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
