"""The demo collectors for the local fleet (``make fleet``): runs until Ctrl-C.

APScheduler runs three GeckoTerminal-style collectors; gecko-otel turns each
job execution into a run. The process serves its status page and
``/metrics`` (the Prometheus exporter) on 127.0.0.1:9465 and posts its own
alerts to the Alertmanager at 127.0.0.1:9093, where Prometheus' alerts from
``collector-config/`` arrive too. What happens:

* ``pool_collector`` (every 5 s) succeeds with 80-120 records;
* ``ohlcv_collector`` (every 5 s) fails every time: after three failures in
  a row ``consecutive_failures`` fires, in the process and in Prometheus;
* ``trade_collector`` (every 5 s) takes 7 s, so APScheduler skips the runs
  that would overlap it (``max_instances=1``) and ``overlap`` fires;
* every 40 s the scheduler is paused for 12 s, as during a deploy: the runs
  due meanwhile are missed once it resumes (the misfire grace is 1 s), and
  both sides report them (``missed_run``).

Arguments: ``--seconds N`` stops after N seconds; ``--port``, ``--alertmanager``
and ``--database`` override the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from opentelemetry.exporter.prometheus import PrometheusMetricReader

import gecko_otel
from gecko_otel.handlers import AlertmanagerAlertHandler, LoggingAlertHandler
from gecko_otel.scheduling.apscheduler import instrument_scheduler

rng = random.Random(7)


@dataclass
class CollectionResult:
    """What the GeckoTerminal collector's collectors return."""

    success: bool
    records_collected: int = 0


async def collect_pools() -> CollectionResult:
    await asyncio.sleep(rng.uniform(0.05, 0.2))  # the HTTP call
    return CollectionResult(success=True, records_collected=rng.randint(80, 120))


async def collect_ohlcv() -> CollectionResult:
    await asyncio.sleep(0.05)
    raise ConnectionError("GeckoTerminal answered 503 Service Unavailable")


async def collect_trades() -> CollectionResult:
    await asyncio.sleep(7)  # longer than its interval
    return CollectionResult(success=True, records_collected=rng.randint(10, 40))


async def maintenance_pauses(scheduler: AsyncIOScheduler) -> None:
    """Pause the whole scheduler for 12 s every 40 s, as a deploy would."""
    while True:
        await asyncio.sleep(28)
        scheduler.pause()
        await asyncio.sleep(12)
        scheduler.resume()


async def main(args: argparse.Namespace) -> None:
    # gecko-otel records each failure; APScheduler would print its traceback too.
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    monitor = gecko_otel.setup(
        service_name="gecko-fleet-demo",
        database_url=args.database,
        metric_readers=[PrometheusMetricReader()],
        alert_handlers=[LoggingAlertHandler(), AlertmanagerAlertHandler(args.alertmanager)],
    )
    server = monitor.serve_http(port=args.port)
    scheduler = AsyncIOScheduler(job_defaults={"misfire_grace_time": 1, "coalesce": False})
    instrument_scheduler(scheduler)
    scheduler.add_job(collect_pools, "interval", seconds=5, id="pool_collector")
    scheduler.add_job(collect_ohlcv, "interval", seconds=5, id="ohlcv_collector")
    scheduler.add_job(collect_trades, "interval", seconds=5, id="trade_collector")
    scheduler.start()
    pauses = asyncio.create_task(maintenance_pauses(scheduler))
    print(f"fleet demo: status page {server.url}, metrics {server.url}metrics", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.seconds)
    pauses.cancel()
    scheduler.shutdown(wait=False)
    monitor.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--port", type=int, default=9465)
    parser.add_argument("--alertmanager", default="http://127.0.0.1:9093")
    parser.add_argument("--database", default="sqlite:///gecko_otel_fleet.db")
    asyncio.run(main(parser.parse_args()))
