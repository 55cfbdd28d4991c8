"""Time the HTML report on a store: ``python benchmarks/report.py [URL] [--days 7]``.

Reads ``URL`` (default: the million-run soak store, ``sqlite:////work/big_1m.db``,
made by ``python benchmarks/soak.py --runs 1000000 --keep PATH``), writes the
report for the window ending at the newest run plus a minute, and prints the
runs in the window, the time taken (median of ``--repeat`` runs, each its own
store connection) split into reading and rendering, and the file size.
Target: under 10 s for 7 days of a million runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from gecko_otel import MonitorConfig
from gecko_otel.reporting import write_report
from gecko_otel.reporting._data import read_report_data
from gecko_otel.store.engine import create_store_engine
from gecko_otel.store.schema import execution_history
from gecko_otel.store.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="sqlite:////work/big_1m.db")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    window = timedelta(days=args.days)
    store = Store(create_store_engine(args.url))
    with store.engine.connect() as conn:
        newest = conn.execute(select(func.max(execution_history.c.start_time))).scalar_one()
    now = newest + timedelta(minutes=1)
    with store.engine.connect() as conn:
        runs = conn.execute(
            select(func.count()).where(execution_history.c.start_time >= now - window)
        ).scalar_one()
    reads, totals = [], []
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            started = time.perf_counter()
            read_report_data(store, since=now - window, until=now, config=MonitorConfig())
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            path = write_report(args.url, Path(tmp) / "report.html", window=window, now=now)
            totals.append(time.perf_counter() - started)
            size = path.stat().st_size
    store.close()
    print(f"store            {store.describe()}")
    print(f"window           {args.days:g} days ending {now:%Y-%m-%d %H:%M:%S} UTC")
    print(f"runs in window   {runs:,}")
    print(f"read (queries)   {statistics.median(reads):.2f} s (median of {args.repeat})")
    print(f"write_report     {statistics.median(totals):.2f} s (median of {args.repeat})")
    print(f"file size        {size:,} bytes")


if __name__ == "__main__":
    main()
