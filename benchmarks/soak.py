"""A soak: many runs, and many collectors, through the whole pipeline with a SQLite store.

1. ``--runs`` runs (1,000,000 by default) of 20 collectors through
   ``track_collection`` on a Monitor with a SQLite store and the default
   configuration (``GECKO_OTEL_*`` variables apply): runs per second, RSS
   at the start (after 10,000 warm-up runs), the middle and the end, the
   growth after warm-up (target: under 30 MB), drops (target: 0) and stored
   rows (target: equal to the runs).
2. ``--collectors`` distinct collectors (100,000 by default), one run each,
   in memory (``max_collectors`` raised to fit them): memory per collector
   and ``health()`` latency over all of them (median of 5).

Run: ``python benchmarks/soak.py [--runs N] [--collectors N] [--keep FILE]``. It prints one
table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import MonitorConfig


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def monitor(database: str | None, config: MonitorConfig) -> gecko_otel.Monitor:
    return gecko_otel.Monitor(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(),
        config=config,
        database=database,
    )


def soak(runs: int, workdir: Path) -> dict[str, object]:
    path = workdir / "soak.db"
    m = monitor(f"sqlite:///{path}", MonitorConfig.from_env())
    names = [f"collector_{i:02d}" for i in range(20)]
    tracks = [gecko_otel.track_collection(name, monitor=m) for name in names]

    def produce(n: int, offset: int) -> None:
        for i in range(n):
            with tracks[(offset + i) % len(tracks)] as run:
                run.add_records(i % 50)

    warmup = 10_000
    produce(warmup, 0)
    m.force_flush()
    start_rss = rss_mb()
    started = time.perf_counter()
    middle_rss = start_rss
    done = 0
    chunk = 50_000
    while done < runs:
        n = min(chunk, runs - done)
        produce(n, done)
        done += n
        if done >= runs // 2 and middle_rss == start_rss:
            middle_rss = rss_mb()
        print(f"  {done:,} runs", file=sys.stderr)
    produced_in = time.perf_counter() - started
    flushed = m.force_flush(timeout_millis=600_000)
    stored_in = time.perf_counter() - started
    end_rss = rss_mb()
    dropped = {k: v for k, v in m.system_health().dropped.items() if v}
    stored = m.statistics().total_executions
    m.shutdown()
    return {
        "runs": runs,
        "produced per s": round(runs / produced_in),
        "stored per s (until flushed)": round(runs / stored_in),
        "flushed": flushed,
        "RSS start / middle / end (MB)": f"{start_rss:.1f} / {middle_rss:.1f} / {end_rss:.1f}",
        "RSS growth after warm-up (MB)": round(end_rss - start_rss, 1),
        "drops": dropped or 0,
        "stored rows": stored - warmup,
    }


def many_collectors(collectors: int) -> dict[str, object]:
    m = monitor(None, MonitorConfig(max_collectors=collectors + 1))
    before = rss_mb()
    for i in range(collectors):
        with gecko_otel.track_collection(f"c{i:06d}", monitor=m) as run:
            run.add_records(1)
    m.health()  # drains and builds what health reads
    per_collector_kb = (rss_mb() - before) * 1024 / collectors
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        health = m.health()
        timings.append(time.perf_counter() - started)
    m.shutdown()
    return {
        "collectors": len(health),
        "memory per collector (KB)": round(per_collector_kb, 2),
        "health() over all, median of 5 (s)": round(statistics.median(timings), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--collectors", type=int, default=100_000)
    parser.add_argument(
        "--keep", type=Path, help="keep the SQLite file of the runs here (for the CLI's timings)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = {**soak(args.runs, Path(workdir)), **many_collectors(args.collectors)}
        if args.keep is not None:
            shutil.move(Path(workdir) / "soak.db", args.keep)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
