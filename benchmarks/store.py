"""What the persistent store costs and how fast it is (issue 4's benchmark targets).

Three measurements, printed as one table (progress goes to stderr):

1. Throughput (each figure the median of ``--throughput-repeat`` measurements,
   each on a fresh database). First ``track_collection`` flat out without a
   store, the ceiling of this process. Then on a Monitor with
   ``database=url`` (default batch size, a queue big enough that nothing is
   dropped): runs produced per second, runs stored per second (stored rows /
   time until ``force_flush()`` returned), the backlog when production ended,
   the writer's drain rate after it, CPU per run over all threads, and drops
   (must be 0). Then the writer's own capacity without the instrumentation:
   pre-built ``FinishedRun`` objects fed to ``StoreWriter.put`` (then
   ``flush``), and to ``Store.write`` in batches on this thread (with its CPU
   time per run). Target: the writer keeps up with >= 20,000 runs/s on SQLite
   with zero drops; the verdict is given for the end-to-end figure and for
   the writer alone.
2. Overhead ratio, by ``benchmarks/overhead.py``'s method and functions
   (interleaved rounds, per-round ratio against hand-written OTel, bare time
   subtracted), for ``@collection`` without a store and with a SQLite store,
   in the same rounds. The store's writer is flushed after each of its
   batches, outside the timing, so its work does not land in another
   candidate's batch; "incl. the background write" adds that flush time.
   Target <= 1.3.
3. Query latency over 1,000,000 stored runs on SQLite (10 collectors, 30 days,
   90 % success, 4 % partial, 4 % failure, 1 % timeout, 1 % skipped):
   ``Store.history(collector_type, limit=100)`` (target < 5 ms) and
   ``Store.statistics(collector_type, window=24 h)`` (target < 50 ms), median
   and p95, then the same through ``Monitor.history`` / ``Monitor.statistics``
   (which flush first), and for information ``statistics()`` without a window,
   the restore query and the Monitor's start. Then the writer's capacity again,
   into a copy of that database (``--runs`` / 2 runs): with its indexes bigger
   than the page cache, a store in steady state writes slower than the fresh
   files of section 1. The database is cached in the temp dir, keyed by schema
   revision and size, rebuilt after 6 hours or with ``--rebuild`` (the load
   time is printed either way).

Run: ``python benchmarks/store.py [--quick] [--postgres | --postgres-url URL]``.
``--quick`` (20,000 runs, 30 rounds) takes about a minute with a cached query
database. ``--postgres`` starts a throwaway server with ``tests/support/postgres.py``
(fsync off, as in the tests); ``--postgres-url`` uses a database you give,
which keeps about 3 x ``--runs`` x ``--throughput-repeat`` runs afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlalchemy
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy import func, select, text

import gecko_otel
from gecko_otel import ExecutionStatus, MonitorConfig
from gecko_otel._values.records import (
    FinishedRun,
    new_execution_id,  # the ids runs get
)
from gecko_otel.store.engine import WRITE, create_store_engine
from gecko_otel.store.schema import HEAD_REVISION, execution_history
from gecko_otel.store.store import Store
from gecko_otel.store.writer import RUN, StoreWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead

REPO = Path(__file__).resolve().parent.parent
COLLECTORS = [f"collector_{i:02d}" for i in range(10)]
DAY = 86_400.0
#: Bump when the generated 1M-row data changes, so a cached file is rebuilt.
DATA_VERSION = 1
CACHE_MAX_AGE = 6 * 3600.0
# Targets from issue 4.
TARGET_RUNS_PER_S = 20_000
TARGET_RATIO = 1.3
TARGET_HISTORY_MS = 5.0
TARGET_STATS_MS = 50.0


@dataclass
class Row:
    section: str
    measure: str
    value: str
    target: str = ""
    verdict: str = ""


ROWS: list[Row] = []
NOTES: list[str] = []


def add(section: str, measure: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("met" if ok else "MISSED")
    ROWS.append(Row(section, measure, value, target, verdict))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def providers(service_name: str | None = None) -> tuple[TracerProvider, MeterProvider]:
    """The pipeline overhead.py gives every candidate: no-op span export, in-memory metrics."""
    resource = Resource.create({"service.name": service_name}) if service_name else None
    tracer_provider = TracerProvider(resource=resource) if resource else TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(overhead.NoOpExporter()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


# -- runs -------------------------------------------------------------------------------

_STATUSES = (
    [ExecutionStatus.SUCCESS] * 90
    + [ExecutionStatus.PARTIAL] * 4
    + [ExecutionStatus.FAILURE] * 4
    + [ExecutionStatus.TIMEOUT] * 1
    + [ExecutionStatus.SKIPPED] * 1
)
_ERRORS = {
    ExecutionStatus.FAILURE: ("ConnectionError", "upstream refused the connection (port 443)"),
    ExecutionStatus.TIMEOUT: ("TimeoutError", "collection exceeded its 300 s budget"),
}


def make_runs(n: int, end_ns: int, span_seconds: float, seed: int) -> Iterator[FinishedRun]:
    """``n`` realistic runs of the 10 collectors, in start order, ending at ``end_ns``.

    Statuses 90 % success, 4 % partial, 4 % failure, 1 % timeout, 1 % skipped;
    durations log-normal around a per-collector median (0.2 s to 40 s).
    """
    rng = random.Random(seed)
    step = span_seconds * 1e9 / n
    first = end_ns - int(span_seconds * 1e9)
    medians = [0.2 * 1.8**i for i in range(len(COLLECTORS))]
    empty: MappingProxyType[str, Any] = MappingProxyType({})
    for i in range(n):
        c = i % len(COLLECTORS)
        status = rng.choice(_STATUSES)
        start = first + int(i * step)
        if status is ExecutionStatus.SKIPPED:
            yield FinishedRun(
                COLLECTORS[c], new_execution_id(), status, start,
                None, None, 0, (), ("previous run still running",), empty,
                None, None, None, None, 0,
            )  # fmt: skip
            continue
        duration = medians[c] * rng.lognormvariate(0.0, 0.5)
        error_type, message = _ERRORS.get(status, (None, None))
        records = 0 if status.is_error else rng.randint(50, 5000)
        yield FinishedRun(
            COLLECTORS[c],
            new_execution_id(),
            status,
            start,
            start + int(duration * 1e9),
            duration,
            records,
            (message,) if message else (),
            ("3 records skipped: bad timestamp",) if status is ExecutionStatus.PARTIAL else (),
            MappingProxyType({"source": f"exchange-{c}", "page_size": 500}),
            error_type,
            message,
            rng.getrandbits(128),
            rng.getrandbits(64),
            0,
        )


# -- databases --------------------------------------------------------------------------


class Databases:
    """Fresh databases for each measurement: SQLite files, and PostgreSQL when asked."""

    def __init__(self, workdir: Path, postgres: bool, postgres_url: str | None) -> None:
        self.workdir = workdir
        self._server: Any = None
        self.postgres_url = postgres_url
        if postgres and postgres_url is None:
            sys.path.insert(0, str(REPO))
            from tests.support.postgres import PostgresServer

            progress("starting a throwaway PostgreSQL server (tests/support/postgres.py)")
            self._server = PostgresServer(workdir / "postgres").start()
        self.throwaway = self._server is not None
        self.backends = ["sqlite"] + (["postgresql"] if postgres or postgres_url else [])

    def fresh(self, backend: str, label: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.workdir / f'{label}-{uuid.uuid4().hex[:8]}.db'}"
        if self._server is not None:
            return str(self._server.create_database(f"bench_{label}_{uuid.uuid4().hex[:8]}"))
        assert self.postgres_url is not None
        return self.postgres_url

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def count_runs(url: str) -> int:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(execution_history)).scalar())
    except sqlalchemy.exc.OperationalError:  # no table yet
        return 0
    finally:
        engine.dispose()


def server_version(url: str) -> str:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


# -- 1. throughput ------------------------------------------------------------------------


def end_to_end(url: str | None, n: int) -> dict[str, float]:
    """Runs through track_collection on a Monitor (with a store at ``url``), flat out."""
    tracer_provider, meter_provider = providers()
    config = MonitorConfig(store_queue_size=n + 100_000, retention_runs=None)
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=config,
        database=url,
    )
    tracks = [gecko_otel.track_collection(name, monitor=monitor) for name in COLLECTORS]
    writer = monitor._store.writer  # type: ignore[attr-defined]  # noqa: SLF001 - measures the writer itself
    for i in range(1000):  # warm up (and the schema exists)
        with tracks[i % len(tracks)] as run:
            run.add_records(3)
    monitor.force_flush()
    before = count_runs(url) if url else 0
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(n):
        try:
            with tracks[i % len(tracks)] as run:
                run.add_records(100)
                if i % 47 == 46:  # 2 % failures, spread over the collectors
                    _refused()
        except ConnectionError:
            pass
    produced = time.perf_counter()
    backlog = writer.pending() if writer else 0
    monitor.force_flush(timeout_millis=600_000)
    flushed = time.perf_counter()
    cpu = time.process_time() - cpu
    stored = count_runs(url) - before if url else n
    drops = sum(writer.counts().values()) if writer else 0
    monitor.shutdown()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return {
        "produced_per_s": n / (produced - start),
        "stored_per_s": stored / (flushed - start),
        "stored": stored,
        "backlog": backlog,
        # Meaningless for a backlog of a batch or two.
        "drain_per_s": backlog / (flushed - produced) if backlog > 2000 else float("nan"),
        "drops": drops,
        "cpu_us": cpu / n * 1e6,
    }


def _refused() -> None:
    raise ConnectionError("upstream refused the connection")


def _health_of(_collector_type: str) -> tuple[str | None, float | None]:
    return "healthy", 1.0  # what the Monitor hands the writer, minus its cost


def _store(url: str) -> Store:
    store = Store(create_store_engine(url), service_name="bench", service_instance_id="bench")
    store.ensure_schema()
    return store


def fresh_ids(runs: list[FinishedRun]) -> list[FinishedRun]:
    """The same runs under new execution ids (a shared --postgres-url keeps earlier ones)."""
    return [run._replace(execution_id=new_execution_id()) for run in runs]


def raw_writer(url: str, runs: list[FinishedRun]) -> dict[str, float]:
    """The writer's own capacity: StoreWriter.put of pre-built runs, then flush."""
    runs = fresh_ids(runs)
    store = _store(url)
    writer = StoreWriter(
        store,
        queue_size=len(runs) + 1,
        batch_size=MonitorConfig().store_batch_size,
        interval=1.0,
        health_of=_health_of,
    )
    writer.put(RUN, runs[0])  # starts the thread
    writer.flush()
    gc.collect()
    start = time.perf_counter()
    for run in runs[1:]:
        writer.put(RUN, run)
    queued = time.perf_counter()
    writer.flush(timeout=600)
    done = time.perf_counter()
    drops = sum(writer.counts().values())
    written = writer.written[RUN] - 1
    writer.shutdown()
    store.close()
    return {
        "put_us": (queued - start) / (len(runs) - 1) * 1e6,
        "per_s": written / (done - start),
        "drops": drops,
    }


def raw_store(url: str, runs: list[FinishedRun], batch: int) -> dict[str, float]:
    """Store.write in batches on this thread: runs per second and CPU per run."""
    runs = fresh_ids(runs)
    store = _store(url)
    store.write(runs[:1], [], [], _health_of)
    gc.collect()
    cpu = time.thread_time()
    start = time.perf_counter()
    for i in range(1, len(runs), batch):
        store.write(runs[i : i + batch], [], [], _health_of)
    elapsed = time.perf_counter() - start
    cpu = time.thread_time() - cpu
    store.close()
    return {"per_s": (len(runs) - 1) / elapsed, "cpu_us": cpu / (len(runs) - 1) * 1e6}


def median_of(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def spread(results: list[dict[str, float]], key: str, fmt: str = ",.0f") -> str:
    """Median (min-max) of ``key`` over ``results``, NaNs left out."""
    values = sorted(r[key] for r in results if r[key] == r[key])
    if not values:
        return "-"
    middle = format(statistics.median(values), fmt)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(values[0], fmt)}-{format(values[-1], fmt)})"


def throughput(dbs: Databases, n: int, repeat: int) -> None:
    runs = list(make_runs(n + 1, time.time_ns(), DAY, seed=1))
    batch = MonitorConfig().store_batch_size
    label = f"median of {repeat} (min-max)" if repeat > 1 else "1 measurement"
    section = f"1. throughput, {n:,} runs each, {label}"
    progress(f"{section}: track_collection without a store")
    base = [end_to_end(None, n) for _ in range(repeat)]
    add(section, "no store: track_collection runs/s", spread(base, "produced_per_s"))
    add(section, "  CPU per run, all threads", spread(base, "cpu_us", ".1f") + " us")
    for backend in dbs.backends:
        sql = backend == "sqlite"
        target = f">= {TARGET_RUNS_PER_S:,}/s" if sql else ""

        def verdict(rate: float, sql: bool = sql) -> bool | None:
            return rate >= TARGET_RUNS_PER_S if sql else None

        progress(f"{section}: {backend}: track_collection with the store")
        e2e = [end_to_end(dbs.fresh(backend, "e2e"), n) for _ in range(repeat)]
        progress(f"{section}: {backend}: StoreWriter.put / Store.write of pre-built runs")
        raw = [raw_writer(dbs.fresh(backend, "writer"), runs) for _ in range(repeat)]
        direct = [raw_store(dbs.fresh(backend, "write"), runs, batch) for _ in range(repeat)]
        stored_all = all(r["stored"] == n for r in e2e)
        drops = sum(r["drops"] for r in e2e) + sum(r["drops"] for r in raw)
        add(section, f"{backend}: track_collection runs produced/s", spread(e2e, "produced_per_s"))
        add(
            section,
            f"{backend}: runs stored/s (until force_flush returned)",
            spread(e2e, "stored_per_s"),
            target,
            verdict(median_of(e2e, "stored_per_s")),
        )
        add(section, "  backlog when production ended", spread(e2e, "backlog"))
        add(section, "  writer drain rate after production", spread(e2e, "drain_per_s") + "/s")
        add(section, "  CPU per run, all threads", spread(e2e, "cpu_us", ".1f") + " us")
        add(
            section,
            "  every run stored; drops",
            f"{'yes' if stored_all else 'NO'}; {drops}",
            "yes; 0",
            stored_all and drops == 0,
        )
        add(
            section,
            f"{backend}: StoreWriter alone (put, flush; batch {batch}) runs/s",
            spread(raw, "per_s"),
            target,
            verdict(median_of(raw, "per_s")),
        )
        add(section, "  put() on the caller's thread", spread(raw, "put_us", ".2f") + " us")
        add(section, f"{backend}: Store.write alone (this thread) runs/s", spread(direct, "per_s"))
        add(section, "  CPU per run, writing thread", spread(direct, "cpu_us", ".1f") + " us")


# -- 2. overhead ----------------------------------------------------------------------------


def make_instrumented(
    database: str | None,
) -> tuple[Callable[[], int], gecko_otel.Monitor, list[Any]]:
    """overhead.make_instrumented, with an optional store."""
    tracer_provider, meter_provider = providers()
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=MonitorConfig(retention_runs=None),
        database=database,
    )

    @gecko_otel.collection("pool_collector", monitor=monitor)
    def instrumented() -> int:
        return overhead.work()

    return instrumented, monitor, [tracer_provider, meter_provider]


def overhead_ratio(dbs: Databases, batches: int, calls: int) -> None:
    section = "2. overhead (overhead.py method)"
    progress(f"{section}: {batches} interleaved rounds x {calls} calls")
    handwritten, hw_providers = overhead.make_handwritten()
    plain, plain_monitor, plain_providers = make_instrumented(None)
    stored, store_monitor, store_providers = make_instrumented(dbs.fresh("sqlite", "overhead"))
    writer = store_monitor._store.writer  # type: ignore[attr-defined]  # noqa: SLF001 - measures the writer itself
    assert writer is not None
    candidates: dict[str, Callable[[], int]] = {
        "bare": overhead.work,
        "handwritten": handwritten,
        "gecko_otel": plain,
        "gecko_otel+store": stored,
    }
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    flushes: list[float] = []
    for func_ in candidates.values():
        overhead.time_batch(func_, 500)
    writer.flush()
    gc.collect()
    for i in range(batches):
        order = list(candidates.items())
        if i % 2:
            order.reverse()
        for name, func_ in order:
            samples[name].append(overhead.time_batch(func_, calls))
            if name == "gecko_otel+store":
                start = time.perf_counter()
                writer.flush()
                flushes.append((time.perf_counter() - start) / calls * 1e6)
    drops = sum(writer.counts().values())

    def ratios(name: str, extra: list[float] | None = None) -> list[float]:
        ours = samples[name]
        if extra is not None:
            ours = [o + e for o, e in zip(ours, extra, strict=True)]
        return sorted(
            (o - b) / (h - b)
            for o, h, b in zip(ours, samples["handwritten"], samples["bare"], strict=True)
        )

    def describe(values: list[float]) -> str:
        q1, q3 = values[len(values) // 4], values[3 * len(values) // 4]
        return f"{statistics.median(values):.2f} (IQR {q1:.2f}-{q3:.2f})"

    median = {name: statistics.median(values) for name, values in samples.items()}
    flush_us = statistics.median(flushes)
    add(
        section, f"per call, median of {batches} rounds x {calls}: bare", f"{median['bare']:.2f} us"
    )
    add(section, "  hand-written OTel", f"{median['handwritten']:.2f} us")
    add(section, "  @collection, no store", f"{median['gecko_otel']:.2f} us")
    add(
        section,
        "  @collection, SQLite store (collector's thread)",
        f"{median['gecko_otel+store']:.2f} us",
    )
    add(section, "  background write per run (flush after each batch)", f"{flush_us:.2f} us")
    no_store = ratios("gecko_otel")
    with_store = ratios("gecko_otel+store")
    add(
        section,
        "ratio vs hand-written, no store",
        describe(no_store),
        f"<= {TARGET_RATIO}",
        statistics.median(no_store) <= TARGET_RATIO,
    )
    add(
        section,
        "ratio vs hand-written, SQLite store",
        describe(with_store),
        f"<= {TARGET_RATIO}",
        statistics.median(with_store) <= TARGET_RATIO,
    )
    add(
        section,
        "ratio incl. the background write (info)",
        describe(ratios("gecko_otel+store", flushes)),
    )
    add(section, "store drops during the rounds", f"{drops}", "0", drops == 0)
    for monitor in (plain_monitor, store_monitor):
        monitor.shutdown()
    for provider in hw_providers + plain_providers + store_providers:
        provider.shutdown()


# -- 3. queries -----------------------------------------------------------------------------


def load_million(path: Path, rows: int) -> dict[str, float]:
    """Build the query database: ``rows`` runs over 30 days ending now, in big transactions."""
    partial = path.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    engine = create_store_engine(f"sqlite:///{partial}")
    store = Store(engine, service_name="bench", service_instance_id="loader")
    store.ensure_schema()
    end_ns = time.time_ns()
    chunk = 50_000
    insert = execution_history.insert()
    start = time.perf_counter()
    pending: list[dict[str, Any]] = []
    with engine.connect().execution_options(**{WRITE: True}) as conn:
        for i, run in enumerate(make_runs(rows, end_ns, 30 * DAY, seed=2), 1):
            pending.append(store.run_row(run))
            if len(pending) == chunk or i == rows:
                with conn.begin():
                    conn.execute(insert, pending)
                pending = []
                if i % 200_000 == 0:
                    progress(f"  loaded {i:,} rows")
        # What the writer keeps beside the runs, so the Monitor restores as usual.
        progress("  collection_metadata from the runs")
        with conn.begin():
            conn.exec_driver_sql(
                """
                INSERT INTO collection_metadata (collector_type, first_run, last_run,
                    total_executions, successful_executions, failed_executions, total_records,
                    consecutive_failures, service_name, updated_at)
                SELECT collector_type, min(start_time), max(start_time), count(*),
                    sum(status IN ('success', 'partial')), sum(status IN ('failure', 'timeout')),
                    sum(records_collected), 0, 'bench', max(start_time)
                FROM execution_history GROUP BY collector_type
                """
            )
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    elapsed = time.perf_counter() - start
    partial.rename(path)
    meta = {"built_at": time.time(), "end_ns": end_ns, "rows": rows, "load_seconds": elapsed}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return meta


def query_database(rows: int, rebuild: bool) -> tuple[Path, dict[str, float], bool]:
    cache = Path(tempfile.gettempdir()) / "gecko_otel_bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"store_rev{HEAD_REVISION}_data{DATA_VERSION}_{rows}.db"
    meta_path = path.with_suffix(".json")
    if not rebuild and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("rows") == rows and time.time() - meta["built_at"] < CACHE_MAX_AGE:
            return path, meta, True
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), meta_path):
        stale.unlink(missing_ok=True)
    progress(f"building {path} ({rows:,} runs)")
    return path, load_million(path, rows), False


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median and p95 in ms over ``repeat`` calls (after 3 warm-up calls), and the last result."""
    result = None
    for _ in range(3):
        result = call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return (
        statistics.median(times),
        times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        result,
    )


def queries(dbs: Databases, rows: int, repeat: int, rebuild: bool, writes: int) -> None:
    section = f"3. queries SQLite, {rows:,} runs"
    path, meta, cached = query_database(rows, rebuild)
    url = f"sqlite:///{path}"
    size_mb = path.stat().st_size / 2**20
    age_h = (time.time() - meta["built_at"]) / 3600
    how = f"cached, built {age_h:.1f} h ago in" if cached else "built in"
    add(section, "database size; load time", f"{size_mb:,.0f} MiB; {meta['load_seconds']:.0f} s")
    NOTES.append(f"query database: {path} ({how} {meta['load_seconds']:.1f} s)")
    collector = COLLECTORS[3]
    engine = create_store_engine(url)
    store = Store(engine, service_name="bench", service_instance_id="reader")
    progress(f"{section}: Store.history / Store.statistics x {repeat}")
    med, p95, result = timed(lambda: store.history(collector, limit=100), repeat)
    assert isinstance(result, list)
    assert len(result) == 100
    target_h = f"< {TARGET_HISTORY_MS:g} ms"
    target_s = f"< {TARGET_STATS_MS:g} ms"
    add(
        section,
        "Store.history(c, limit=100): median / p95",
        f"{med:.2f} / {p95:.2f} ms",
        target_h,
        med < TARGET_HISTORY_MS,
    )
    med, p95, result = timed(lambda: store.statistics(collector, window=DAY), repeat)
    assert isinstance(result, gecko_otel.ExecutionStatistics)
    in_window = result.total_executions
    add(
        section,
        f"Store.statistics(c, window=24h) [{in_window:,} runs]: median / p95",
        f"{med:.2f} / {p95:.2f} ms",
        target_s,
        med < TARGET_STATS_MS,
    )
    few = max(5, repeat // 10)
    med, p95, result = timed(lambda: store.statistics(collector), few)
    assert isinstance(result, gecko_otel.ExecutionStatistics)
    add(
        section,
        f"Store.statistics(c) no window [{result.total_executions:,} runs] (info)",
        f"{med:.1f} / {p95:.1f} ms",
    )
    med, p95, result = timed(store.statistics, few)
    assert isinstance(result, gecko_otel.ExecutionStatistics)
    add(
        section,
        f"Store.statistics() everything [{result.total_executions:,} runs] (info)",
        f"{med:.1f} / {p95:.1f} ms",
    )
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    med, p95, _ = timed(lambda: store.window_buckets(since, 60.0, "bench"), 3)
    add(
        section,
        "Store.window_buckets(last hour), Monitor restore (info)",
        f"{med:.0f} / {p95:.0f} ms",
    )
    store.close()

    progress(f"{section}: Monitor.history / Monitor.statistics x {repeat}")
    tracer_provider, meter_provider = providers(service_name="bench")  # restores the loaded data
    start = time.perf_counter()
    monitor = gecko_otel.Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=MonitorConfig(retention_runs=None, retention_metrics=None, retention_alerts=None),
        database=url,
        watchdog=False,  # nothing fires alerts into the cached file
    )
    opened = (time.perf_counter() - start) * 1e3
    add(section, "Monitor start (migration check + restore) (info)", f"{opened:.0f} ms")
    med, p95, _ = timed(lambda: monitor.history(collector, limit=100), repeat)
    add(
        section,
        "Monitor.history(c, limit=100): median / p95",
        f"{med:.2f} / {p95:.2f} ms",
        target_h,
        med < TARGET_HISTORY_MS,
    )
    med, p95, _ = timed(lambda: monitor.statistics(collector, window=DAY), repeat)
    add(
        section,
        "Monitor.statistics(c, window=24h): median / p95",
        f"{med:.2f} / {p95:.2f} ms",
        target_s,
        med < TARGET_STATS_MS,
    )
    monitor.shutdown()
    tracer_provider.shutdown()
    meter_provider.shutdown()
    # For the reader: how SQLite answers (the queries Store builds, written out).
    since = (datetime.now(timezone.utc) - timedelta(days=1)).replace(tzinfo=None).isoformat(" ")
    plans = {
        "history": (
            "SELECT * FROM execution_history WHERE collector_type = ? "
            "ORDER BY start_time DESC, id DESC LIMIT 100",
            (collector,),
        ),
        "statistics": (
            "SELECT status, count(*), sum(duration_seconds), count(duration_seconds), "
            "sum(records_collected), min(start_time), max(start_time) FROM execution_history "
            "WHERE collector_type = ? AND start_time >= ? GROUP BY status",
            (collector, since),
        ),
    }
    with engine.connect() as conn:
        for label, (sql, params) in plans.items():
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            NOTES.append(f"SQLite plan, {label}: " + "; ".join(str(step[-1]) for step in plan))
    engine.dispose()

    # Writing into a store that already holds the runs (a copy): the indexes are
    # bigger than the page cache now, unlike the fresh files of section 1.
    progress(f"{section}: {writes:,} runs written into a copy of it")
    copy = dbs.workdir / "big.db"
    shutil.copyfile(path, copy)
    if Path(f"{path}-wal").exists():
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
    batch = MonitorConfig().store_batch_size
    runs = list(make_runs(writes + 1, time.time_ns(), DAY, seed=3))
    raw = raw_writer(f"sqlite:///{copy}", runs)
    direct = raw_store(f"sqlite:///{copy}", runs, batch)
    add(
        section,
        f"StoreWriter alone into (a copy of) it: runs/s [{writes:,} runs]",
        f"{raw['per_s']:,.0f}",
        f">= {TARGET_RUNS_PER_S:,}/s",
        raw["per_s"] >= TARGET_RUNS_PER_S,
    )
    add(
        section,
        "  Store.write alone into it: runs/s; CPU per run",
        f"{direct['per_s']:,.0f}; {direct['cpu_us']:.1f} us",
    )


# -- main -------------------------------------------------------------------------------------


def code_version() -> str:
    """Which gecko_otel was measured: the repository's src (git commit) or another copy."""
    package = Path(gecko_otel.__file__).resolve().parent
    if package != REPO / "src" / "gecko_otel":
        return f"gecko_otel from {package}"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "gecko_otel from src (git unavailable)"
    return f"src at {commit}" + (" + uncommitted changes" if dirty else "")


def print_table(argv: list[str], extra: str, load: tuple[float, float]) -> None:
    print(f"$ {shlex.join(argv)}")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"SQLite {__import__('sqlite3').sqlite_version}{extra}; schema {HEAD_REVISION}"
    )
    print(f"code: {code_version()}")
    print(f"load average (1 min) at start {load[0]:.2f}, at end {load[1]:.2f}")
    width = max(len(r.measure) for r in ROWS)
    vwidth = max(len(r.value) for r in ROWS)
    twidth = max(len(r.target) for r in ROWS)
    section = None
    for r in ROWS:
        if r.section != section:
            section = r.section
            print(f"\n{section}")
        line = f"  {r.measure:<{width}}  {r.value:>{vwidth}}"
        if r.target or r.verdict:
            line += f"  {r.target:<{twidth}}  {r.verdict}"
        print(line.rstrip())
    for note in NOTES:
        print(f"\n{note}")
    missed = [r for r in ROWS if r.verdict == "MISSED"]
    print(f"\ntargets: {sum(r.verdict == 'met' for r in ROWS)} met, {len(missed)} missed")
    print(f"internal errors: {gecko_otel.internal_error_count()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds (< 2 min)")
    parser.add_argument(
        "--postgres", action="store_true", help="also PostgreSQL (throwaway server)"
    )
    parser.add_argument("--postgres-url", help="also PostgreSQL, on this database (it gets filled)")
    parser.add_argument("--runs", type=int, help="runs per throughput measurement (100,000)")
    parser.add_argument("--throughput-repeat", type=int, default=3, help="throughput repeats")
    parser.add_argument("--batches", type=int, help="overhead rounds (100)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per overhead batch")
    parser.add_argument("--query-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50, help="calls per query timing")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached query database")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["throughput", "overhead", "queries"]
    )
    args = parser.parse_args()
    runs = args.runs or (20_000 if args.quick else 100_000)
    batches = args.batches or (30 if args.quick else 100)

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gecko_otel_store_bench_") as workdir:
        dbs = Databases(Path(workdir), args.postgres, args.postgres_url)
        extra = ""
        try:
            if "postgresql" in dbs.backends:
                extra = f", PostgreSQL {server_version(dbs.fresh('postgresql', 'version'))}"
                if dbs.throwaway:
                    extra += " (throwaway server: fsync off)"
            if "throughput" not in args.skip:
                throughput(dbs, runs, args.throughput_repeat)
            if "overhead" not in args.skip:
                overhead_ratio(dbs, batches, args.calls)
            if "queries" not in args.skip:
                queries(dbs, args.query_rows, args.repeat, args.rebuild, runs // 2)
        finally:
            dbs.close()
    print_table(sys.orig_argv, extra, (load_start, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
