"""Child-process entry points and helpers for the multi-process store tests.

The entry points are top-level functions so ``multiprocessing``'s "spawn" context can import
them: each child starts a fresh interpreter (no SQLAlchemy engine, pool, lock or thread copied
from the parent), builds its own Monitor on the shared database and reports back through files.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gecko_otel import Alert, MonitorConfig, track_collection
from gecko_otel._guard import internal_error_count
from gecko_otel._monitor import Monitor
from gecko_otel.testing import FakeClock

#: Seconds a child may take before it is killed and the test fails.
CHILD_TIMEOUT = 60.0


def build_monitor(
    database: Any,
    service_name: str,
    *,
    config: MonitorConfig | None = None,
    clock: Callable[[], float] | None = None,
    handlers: Iterable[Callable[[Alert], None]] = (),
) -> Monitor:
    """A Monitor on ``database`` whose runs are stored under ``service_name``.

    Real SDK providers (owned, so ``shutdown()`` closes them), no watchdog: tests call
    ``evaluate()`` themselves.
    """
    tracer_provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
    )
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    return Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        config=config,
        alert_handlers=handlers,
        owned_providers=[tracer_provider, meter_provider],
        clock=clock,
        watchdog=False,
        database=database,
    )


def one_run(monitor: Monitor, collector: str, *, fail: bool = False, records: int = 0) -> str:
    """One run of ``collector`` reported to ``monitor`` (a failure raises in the block); its id."""
    execution_id = ""
    try:
        with track_collection(collector, monitor=monitor) as r:
            execution_id = r.execution_id
            r.add_records(records)
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    return execution_id


def no_internal_errors() -> None:
    """In a child: fail if gecko-otel reported an internal error (the parent's autouse check)."""
    count = internal_error_count()
    assert count == 0, f"gecko-otel reported {count} internal error(s) in the child"


def shared_plan(runs: int) -> list[tuple[bool, int]]:
    """(fails, records) of each run of the shared collector, the same in every process.

    Failures come alone or in pairs, never three in a row, and the last run succeeds.
    """
    plan = []
    for i in range(runs):
        fails = (i % 7 == 3 or i % 11 == 5) and i != runs - 1
        plan.append((fails, 0 if fails else i % 4))
    return plan


def own_fails(i: int) -> bool:
    """Whether run ``i`` of a process's own collector fails."""
    return i % 5 == 0


def _report_error(out: Path) -> None:
    with open(out.with_suffix(".error"), "w", encoding="utf-8") as handle:
        handle.write(traceback.format_exc())


# --------------------------------------------------------------------------- fleet


def fleet_writer(
    url: str,
    service_name: str,
    shared: str,
    own: str,
    runs: int,
    own_runs: int,
    start: Any,
    finish: Any,
    out: str,
) -> None:
    """Write ``runs`` runs of ``shared`` and ``own_runs`` of ``own`` at the same time as a peer.

    ``start`` and ``finish`` are barriers shared with the other writer: both start writing
    together, and after both have stored everything each ends with one success of ``shared``,
    so the shared collector's streak ends at zero whatever order the processes wrote in.
    Writes ``{"done": true}`` to ``out`` at the end.
    """
    path = Path(out)
    try:
        config = MonitorConfig(
            store_flush_interval=0.05, store_batch_size=500, min_runs_for_rate=10**9
        )
        monitor = build_monitor(url, service_name, config=config)
        try:
            plan = shared_plan(runs)
            start.wait(CHILD_TIMEOUT)
            for i, (fails, records) in enumerate(plan[:-1]):
                one_run(monitor, shared, fail=fails, records=records)
                if i < own_runs:
                    one_run(monitor, own, fail=own_fails(i), records=1)
            assert monitor.force_flush(30_000), "the writer did not store the runs in time"
            finish.wait(CHILD_TIMEOUT)
            fails, records = plan[-1]
            one_run(monitor, shared, fail=fails, records=records)
        finally:
            monitor.shutdown()
        no_internal_errors()
        path.write_text(json.dumps({"done": True}), encoding="utf-8")
    except BaseException:
        _report_error(path)
        raise


# --------------------------------------------------------------------------- restart


def failing_then_killed(
    url: str,
    service_name: str,
    collector: str,
    start: float,
    cooldown: float,
    pending_runs: int,
    out: str,
) -> None:
    """Fail ``collector`` three times (an alert fires), store it all, queue more, then wait.

    Every notification is appended to ``out`` as a JSON line ``{"kind", "id", "n"}``.
    ``out + ".ready"`` appears once the extra runs are queued; the parent then SIGKILLs us,
    so those runs are never written. The clock is a FakeClock fixed at ``start``.
    """
    path = Path(out)

    def handler(alert: Alert) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            kind = alert.notification.value if alert.notification else ""
            handle.write(json.dumps({"kind": kind, "id": alert.id, "n": alert.notifications}))
            handle.write("\n")

    try:
        config = MonitorConfig(
            store_flush_interval=3600.0,  # nothing is written unless we flush
            alert_cooldown=cooldown,
            recovery_threshold=2,
            min_runs_for_rate=10**9,
        )
        monitor = build_monitor(
            url, service_name, config=config, clock=FakeClock(start), handlers=[handler]
        )
        for _ in range(3):
            one_run(monitor, collector, fail=True)
        assert monitor.force_flush(30_000), "force_flush did not store the runs in time"
        for _ in range(pending_runs):
            one_run(monitor, collector, fail=True)
        monitor.system_health()  # the extra runs are counted (alert updated) and queued
        no_internal_errors()
        ready = Path(out + ".ready")
        pending = monitor._store.writer.pending() if hasattr(monitor._store, "writer") else -1
        ready.with_suffix(".tmp").write_text(json.dumps({"pending": pending}), encoding="utf-8")
        os.replace(ready.with_suffix(".tmp"), ready)  # the parent never reads half a file
        time.sleep(CHILD_TIMEOUT)  # killed long before this ends
    except BaseException:
        _report_error(path)
        raise


# --------------------------------------------------------------------------- reading the database


def sql_rows(url: str, statement: str, **params: Any) -> list[Any]:
    """Rows of one SQL statement, on a connection of our own (closed, engine disposed)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(statement), params).all())
    finally:
        engine.dispose()


def sql_value(url: str, statement: str, **params: Any) -> Any:
    """The single value of a one-row, one-column SQL statement."""
    [(value,)] = sql_rows(url, statement, **params)
    return value


# --------------------------------------------------------------------------- running children


def spawn(target: Callable[..., None], *args: Any) -> BaseProcess:
    """Start ``target(*args)`` in a fresh interpreter ("spawn": nothing forked)."""
    process = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    process.start()
    return process


def spawn_context() -> Any:
    """The "spawn" multiprocessing context (for barriers shared with spawned children)."""
    return multiprocessing.get_context("spawn")


def join_all(children: list[tuple[BaseProcess, Path]], timeout: float = CHILD_TIMEOUT) -> None:
    """Wait for every child; on the first failure or on timeout kill the rest and fail."""
    deadline = time.monotonic() + timeout
    try:
        while any(process.is_alive() for process, _ in children):
            for process, out in children:
                if not process.is_alive():
                    check_child(process.exitcode, out)
            if time.monotonic() > deadline:
                raise AssertionError(f"children still running after {timeout} s: killed")
            time.sleep(0.05)
        for process, out in children:
            check_child(process.exitcode, out)
    finally:
        for process, _ in children:
            if process.is_alive():
                process.kill()
                process.join(5)


def check_child(exitcode: int | None, out: Path) -> None:
    error = out.with_suffix(".error")
    detail = error.read_text(encoding="utf-8") if error.exists() else "(no traceback written)"
    if exitcode != 0 or error.exists():
        raise AssertionError(f"child exited with {exitcode}:\n{detail}")


def wait_for_file(path: Path, process: BaseProcess, out: Path, timeout: float) -> None:
    """Wait until ``path`` exists while the child lives; fail (and kill it) otherwise."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not process.is_alive():
            check_child(process.exitcode, out)
            raise AssertionError(f"child exited ({process.exitcode}) before writing {path}")
        if time.monotonic() > deadline:
            process.kill()
            process.join(5)
            raise AssertionError(f"child did not write {path} within {timeout} s: killed")
        time.sleep(0.02)


def sigkill(process: BaseProcess) -> None:
    """Kill the child the hard way (no shutdown, no atexit, no flush) and reap it."""
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    assert process.exitcode == -signal.SIGKILL, process.exitcode
