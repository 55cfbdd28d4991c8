"""Collectors' p99 latency while an alert handler calls back into the Monitor.

Several collector threads run a ``@collection`` function in a loop, timing
each call; a failing collector fires alerts continuously. Each round runs
twice, interleaved, on a fresh Monitor:

  (a) quiet: the handler does nothing;
  (b) busy: on every notification the handler acknowledges and resolves the
      alert, reads the alerts and runs a collection of its own.

It prints the collectors' p99 per round for both, and the median over rounds
of the per-round ratio busy/quiet (1.0: handlers' callbacks cost the
collectors nothing; GIL contention alone keeps it a little above).

Run: ``python benchmarks/handler_callbacks.py [--rounds N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import Alert, MonitorConfig

COLLECTORS = 3
_ROUND = itertools.count()
PAUSE = 0.001  # between a collector's calls: collectors wait on I/O, not on us


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def run_round(busy: bool, seconds: float, database: str | None = None) -> tuple[float, int]:
    """The healthy collectors' p99 (ms) in one round, and the notifications handled."""
    tp = TracerProvider(shutdown_on_exit=False)
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    monitor = gecko_otel.Monitor(
        tracer_provider=tp,
        meter_provider=mp,
        config=MonitorConfig(max_consecutive_failures=1, handler_timeout=30),
        owned_providers=[tp, mp],
        database=database.replace("{round}", str(next(_ROUND))) if database else None,
    )
    stop = threading.Event()
    handled = [0]

    @gecko_otel.collection("handler_job", monitor=monitor)
    def from_handler() -> int:
        return 1

    def handler(alert: Alert) -> None:
        handled[0] += 1
        if not busy:
            return
        monitor.acknowledge_alert(alert.id)
        monitor.resolve_alert(alert.id)
        monitor.alerts()
        from_handler()

    monitor.add_alert_handler(handler)

    @gecko_otel.collection("failing", monitor=monitor)
    def failing() -> None:
        raise RuntimeError("down")

    def fail_loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(RuntimeError):
                failing()
            time.sleep(PAUSE)

    latencies: list[list[float]] = [[] for _ in range(COLLECTORS)]

    def collect_loop(i: int) -> None:
        @gecko_otel.collection(f"healthy_{i}", monitor=monitor)
        def collect() -> int:
            return i

        own = latencies[i]
        clock = time.perf_counter
        while not stop.is_set():
            started = clock()
            collect()
            own.append(clock() - started)
            time.sleep(PAUSE)

    threads = [threading.Thread(target=collect_loop, args=(i,)) for i in range(COLLECTORS)]
    threads.append(threading.Thread(target=fail_loop))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    monitor.shutdown(1000)
    everything = [x for own in latencies for x in own[len(own) // 10 :]]  # skip warm-up
    return p99(everything) * 1000, handled[0]


def measure(
    rounds: int,
    seconds: float,
    report: Callable[[str], Any] | None = print,
    database: str | None = None,
) -> float:
    """The median over ``rounds`` of busy/quiet p99, the two interleaved."""
    ratios = []
    for r in range(rounds):
        if r % 2:
            busy, busy_n = run_round(True, seconds, database)
            quiet, quiet_n = run_round(False, seconds, database)
        else:
            quiet, quiet_n = run_round(False, seconds, database)
            busy, busy_n = run_round(True, seconds, database)
        ratios.append(busy / quiet)
        if report is not None:
            report(
                f"round {r + 1}: p99 quiet {quiet:.3f} ms ({quiet_n} notifications), "
                f"busy {busy:.3f} ms ({busy_n} notifications), ratio {busy / quiet:.2f}"
            )
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument(
        "--database", default=None, help="a URL; {round} is replaced by a fresh number each round"
    )
    args = parser.parse_args()
    ratio = measure(args.rounds, args.seconds, database=args.database)
    print(f"median p99 ratio busy/quiet: {ratio:.2f}")


if __name__ == "__main__":
    main()
