"""Guarantee: a fault anywhere behind gecko-otel costs the collectors nothing.

Each case runs the same load through two Monitors alive side by side, both
on a real SQLite file: a healthy one, and one with a fault behind it: its
database locked, deleted or out of space; its OTLP endpoint closed or
blackholed; its alert handler raising, hanging or ``async``. Load goes to
one Monitor at a time, in alternating phases, so both see the same machine.
In every case:

- each run returns its value or raises its own exception, unchanged;
- the runs' p99 latency under the fault is within 2x the healthy one's
  (over all phases: short phases, finely interleaved, share the machine's noise;
  a set over 2x is measured again, at most three times);
- every run is stored or counted as lost: ``produced == stored + losses``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gecko_otel
import gecko_otel.store.engine
import gecko_otel.store.writer
from gecko_otel import Alert, MonitorConfig
from gecko_otel._monitor import Monitor
from support.otlp import otlp_receiver

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RUNS_PER_PHASE = 200
ATTEMPTS = 3
ROUNDS = 15  # healthy, faulty, healthy, faulty...
COLLECTORS = ("load-a", "load-b", "load-c", "flappy")


class Boom(Exception):
    """What a failing run raises: it must come out of the block unchanged."""


def fails(i: int) -> bool:
    # "flappy" fails five runs in a row every ten: its alert fires and resolves.
    return COLLECTORS[i % 4] == "flappy" and (i // 4) % 10 < 5


@dataclass
class Side:
    """One Monitor of the pair and what the load measured through it."""

    monitor: Monitor
    db: Path
    produced: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99)]


def build(
    db: Path,
    *,
    handler: Callable[[Alert], Any],
    endpoint: str | None = None,
    queue: int = 100_000,
) -> Monitor:
    """A Monitor on ``db`` with batch span export (to ``endpoint`` over OTLP/gRPC, or memory)."""
    resource = Resource.create({"service.name": "faults", "service.instance.id": db.stem})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    readers: list[Any]
    if endpoint is None:
        tracer_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        readers = [InMemoryMetricReader()]
    else:
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=1)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
        metrics = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=1)
        readers = [PeriodicExportingMetricReader(metrics, export_interval_millis=200)]
    meter_provider = MeterProvider(
        resource=resource, metric_readers=readers, shutdown_on_exit=False
    )
    config = MonitorConfig(
        store_flush_interval=0.05,
        max_consecutive_failures=3,
        alert_cooldown=0.01,
        handler_timeout=0.2,
        min_runs_for_rate=10**6,
        shutdown_timeout=3,
        store_queue_size=queue,
    )
    return Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=config,
        alert_handlers=[handler],
        owned_providers=[tracer_provider, meter_provider],
        database=f"sqlite:///{db}",
    )


def phase(side: Side) -> None:
    """RUNS_PER_PHASE runs through ``side``; checks each result, keeps each latency."""
    latencies = side.latencies
    for _ in range(RUNS_PER_PHASE):
        i = side.produced
        side.produced += 1
        collector = COLLECTORS[i % 4]
        raised: BaseException | None = None
        error = Boom(i)
        started = time.perf_counter()
        try:
            with gecko_otel.track_collection(collector, monitor=side.monitor) as run:
                run.add_records(1)
                if fails(i):
                    raise error
                value = i * 2
        except Boom as exc:
            raised = exc
        latencies.append(time.perf_counter() - started)
        if fails(i):
            assert raised is error  # the collector's own exception, unchanged
        else:
            assert raised is None
            assert value == i * 2


def stored(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as connection:
        try:
            return int(connection.execute("SELECT count(*) FROM execution_history").fetchone()[0])
        except sqlite3.OperationalError:  # moved away before the writer made its tables
            return 0


def losses(monitor: Monitor) -> int:
    dropped = monitor.system_health().dropped
    return dropped["store_dropped_runs"] + dropped["store_rejected"]


def some_lost(monitor: Monitor) -> None:
    """The small queue overflowed, so the count of losses is put to the test."""
    assert monitor.system_health().dropped["store_dropped_runs"] > 0


@dataclass
class Fault:
    """What a case does around the faulty side's phases."""

    db: Path
    endpoint: str | None = None
    handler: Callable[[Alert], Any] = lambda alert: None
    on: Callable[[], None] = lambda: None
    off: Callable[[], None] = lambda: None
    check: Callable[[Monitor], None] = lambda monitor: None
    stored: Callable[[], int] | None = None  # rows of every file the runs went to
    flushes: bool = True  # False: force_flush() rightly reports what it could not deliver
    queue: int = 100_000  # the faulty side's store_queue_size: small, so that some runs are lost

    def stored_runs(self) -> int:
        return self.stored() if self.stored is not None else stored(self.db)


def run_case(fault: Fault, healthy_db: Path) -> None:
    with contextlib.ExitStack() as stack:
        # Exporting spans costs the same whether the peer answers or not: when the
        # faulty side exports over OTLP, the healthy side exports to a real receiver.
        healthy_endpoint = None
        if fault.endpoint is not None:
            healthy_endpoint = f"127.0.0.1:{stack.enter_context(otlp_receiver()).port}"
        healthy = Side(
            build(healthy_db, handler=lambda alert: None, endpoint=healthy_endpoint), healthy_db
        )
        faulty = Side(
            build(fault.db, handler=fault.handler, endpoint=fault.endpoint, queue=fault.queue),
            fault.db,
        )
        measure(fault, healthy, faulty)


def measure(fault: Fault, healthy: Side, faulty: Side) -> None:
    ratios: list[float] = []
    try:
        phase(healthy)  # warm-up: instruments created, first writes done
        phase(faulty)
        # A p99 on two shared cores can catch another process's burst: a set of
        # rounds over 2x is measured again, up to ATTEMPTS times; a real cost
        # (a sleep or a lock on the collector's path) fails every attempt.
        while len(ratios) < ATTEMPTS and (not ratios or ratios[-1] > 2.0):
            healthy.latencies.clear()
            faulty.latencies.clear()
            for _ in range(ROUNDS):
                phase(healthy)
                fault.on()
                try:
                    phase(faulty)
                finally:
                    fault.off()
            ratios.append(faulty.p99 / healthy.p99)
            print(f"p99 healthy {healthy.p99 * 1e6:.0f} us, faulty {faulty.p99 * 1e6:.0f} us")
        fault.check(faulty.monitor)
        assert healthy.monitor.force_flush(30_000)
        assert faulty.monitor.force_flush(30_000 if fault.flushes else 1_000) is fault.flushes
    finally:
        for side in (healthy, faulty):
            side.monitor.shutdown()
    assert min(ratios) <= 2.0, ratios
    assert stored(healthy.db) == healthy.produced
    assert losses(healthy.monitor) == 0
    assert fault.stored_runs() + losses(faulty.monitor) == faulty.produced


# --- the faults --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _quick_store_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gecko_otel.store.writer, "BACKOFF_MAX", 0.2)
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.05)


def store_locked(tmp_path: Path) -> Iterator[Fault]:
    """Another connection holds the write lock (a backup, a migration, another program)."""
    db = tmp_path / "faulty.db"
    locker = sqlite3.connect(db, isolation_level=None, timeout=30)
    fault = Fault(
        db,
        on=lambda: locker.execute("BEGIN EXCLUSIVE"),
        off=lambda: locker.execute("COMMIT"),
        queue=150,
        check=some_lost,
    )
    yield fault
    locker.close()


def store_deleted(tmp_path: Path) -> Iterator[Fault]:
    """The file is moved away while in use (as deleting it would): a new one takes over.

    Moved rather than deleted, so that the runs written to the old file, before
    the writer noticed, can be counted at the end.
    """
    db = tmp_path / "faulty.db"
    gone: list[Path] = []

    def move_away() -> None:
        if len(gone) < 2 and db.exists():  # twice: the load runs on into the new files
            gone.append(tmp_path / f"gone-{len(gone)}.db")
            # The database file last: the writer makes a new one as soon as it sees it
            # gone, and the -wal and -shm moved after that would be the new file's.
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{db}{suffix}").rename(f"{gone[-1]}{suffix}")

    def check(monitor: Monitor) -> None:
        assert monitor.force_flush(30_000)
        assert monitor.export()["store"]["file_recreated"] >= 1

    yield Fault(db, on=move_away, check=check, stored=lambda: stored(db) + sum(map(stored, gone)))


@contextlib.contextmanager
def small_filesystem(path: Path) -> Iterator[bool]:
    """A 4 MB tmpfs at ``path`` when this process may mount one (root, as in CI)."""
    path.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def store_full(tmp_path: Path) -> Iterator[Fault]:
    """No space left: a ballast file fills a small filesystem (or a file-size limit)."""
    with small_filesystem(tmp_path / "small") as mounted:
        db = tmp_path / "small" / "faulty.db"
        ballast = tmp_path / "small" / "ballast"
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

        def fill() -> None:
            if mounted:
                with ballast.open("wb", buffering=0) as out, contextlib.suppress(OSError):
                    while True:  # until ENOSPC
                        out.write(b"\0" * 65536)
            else:  # every file this process grows stops at its size now
                resource.setrlimit(resource.RLIMIT_FSIZE, (db.stat().st_size, hard))

        def free() -> None:
            if mounted:
                ballast.unlink(missing_ok=True)
            else:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

        try:
            yield Fault(db, on=fill, off=free, queue=150, check=some_lost)
        finally:
            free()
            signal.signal(signal.SIGXFSZ, previous)


@contextlib.contextmanager
def listening() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server
    server.close()


def otlp_closed_port(tmp_path: Path) -> Iterator[Fault]:
    """Nothing listens where the exporters send."""
    with listening() as server:
        port = server.getsockname()[1]
    yield Fault(tmp_path / "faulty.db", endpoint=f"127.0.0.1:{port}")


def otlp_blackholed(tmp_path: Path) -> Iterator[Fault]:
    """The endpoint accepts connections and never answers."""
    with listening() as server:
        yield Fault(tmp_path / "faulty.db", endpoint=f"127.0.0.1:{server.getsockname()[1]}")


def handler_raising(tmp_path: Path) -> Iterator[Fault]:
    calls = []

    def handler(alert: Alert) -> None:
        calls.append(alert)
        raise RuntimeError("handler bug")

    def check(monitor: Monitor) -> None:
        assert calls
        assert monitor.system_health().dropped["handler_errors"] > 0

    yield Fault(tmp_path / "faulty.db", handler=handler, check=check)


def handler_hanging(tmp_path: Path) -> Iterator[Fault]:
    release = threading.Event()

    def handler(alert: Alert) -> None:
        release.wait(30)

    def check(monitor: Monitor) -> None:
        deadline = time.monotonic() + 10  # the first hung call is abandoned handler_timeout later
        while monitor.system_health().dropped["handler_timeouts"] == 0:
            assert time.monotonic() < deadline, "no handler call was abandoned"
            time.sleep(0.05)

    yield Fault(tmp_path / "faulty.db", handler=handler, check=check, flushes=False)
    release.set()


def handler_async(tmp_path: Path) -> Iterator[Fault]:
    heard = []

    async def handler(alert: Alert) -> None:
        await asyncio.sleep(0.001)
        heard.append(alert)

    def check(monitor: Monitor) -> None:
        assert heard

    yield Fault(tmp_path / "faulty.db", handler=handler, check=check)


FAULTS = {
    "store-locked": store_locked,
    "store-deleted": store_deleted,
    "store-full": store_full,
    "otlp-closed-port": otlp_closed_port,
    "otlp-blackholed": otlp_blackholed,
    "handler-raising": handler_raising,
    "handler-hanging": handler_hanging,
    "handler-async": handler_async,
}


@pytest.mark.parametrize("name", FAULTS)
def test_a_fault_costs_the_collectors_nothing(tmp_path: Path, name: str) -> None:
    cases = FAULTS[name](tmp_path)
    fault = next(cases)
    try:
        run_case(fault, tmp_path / "healthy.db")
    finally:
        with contextlib.suppress(StopIteration):
            next(cases)
