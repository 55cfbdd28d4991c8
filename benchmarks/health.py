"""How long health() and system_health() take with many collectors.

Builds a Monitor on in-memory SDK providers, records runs for 1,000
collectors (a mix of healthy, failing and slow ones, so rules and alerts are
live), then times ``Monitor.health()`` and ``Monitor.system_health()``.
Target: under 10 ms each.

Run: ``python benchmarks/health.py [--collectors N] [--runs-per-collector N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import MonitorConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--collectors", type=int, default=1000)
    parser.add_argument("--runs-per-collector", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=MonitorConfig(max_execution_time=0.0005),
        watchdog=False,
    )

    def collect(c: int, i: int) -> None:
        run = gecko_otel.current_run()
        if run is not None:
            run.add_records(10)
        if c % 10 == 0 and i >= args.runs_per_collector - 3:
            raise RuntimeError("failing collector")
        if c % 10 == 1:
            time.sleep(0.001)  # a slow collector

    for c in range(args.collectors):
        for i in range(args.runs_per_collector):
            try:
                with gecko_otel.track_collection(f"collector_{c:04d}", monitor=monitor):
                    collect(c, i)
            except RuntimeError:
                pass
    monitor.force_flush()

    def timed(func: object) -> list[float]:
        out = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            func()  # type: ignore[operator]
            out.append((time.perf_counter() - start) * 1000)
        return out

    first_start = time.perf_counter()
    health = monitor.health()
    first = (time.perf_counter() - first_start) * 1000
    health_ms = timed(monitor.health)
    system_ms = timed(monitor.system_health)
    system = monitor.system_health()
    print(
        f"{len(health)} collectors, {args.runs_per_collector} runs each; "
        f"{system.critical_collectors} critical, {system.warning_collectors} warning, "
        f"{sum(system.active_alerts.values())} active alerts"
    )
    print(
        f"health():        first call {first:6.2f} ms, "
        f"then median {statistics.median(health_ms):6.2f} ms"
    )
    print(f"system_health(): median {statistics.median(system_ms):6.2f} ms  (target < 10 ms each)")
    monitor.shutdown()
    tracer_provider.shutdown()
    meter_provider.shutdown()


if __name__ == "__main__":
    main()
