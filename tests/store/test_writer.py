"""The background writer's own promises: no tracing of its writes, bounded queue, flush."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from sqlalchemy import event

import gecko_otel._monitor
import gecko_otel.store.engine
from gecko_otel.store.engine import create_store_engine
from gecko_otel.store.schema import execution_history, performance_metrics
from gecko_otel.store.store import Store
from gecko_otel.store.writer import METRIC, RUN, StoreWriter
from support.runs import run
from support.store_helpers import StatementLog, finished, metric_point, rows, stored_monitor
from support.store_procs import sql_rows


def test_writes_run_with_instrumentation_suppressed(store_url: str) -> None:
    """A SQLAlchemy/psycopg instrumentation must not trace the store's own writes."""
    engine = create_store_engine(store_url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EXECUTION_HISTORY"):
            seen.append((statement, context.get_value(_SUPPRESS_INSTRUMENTATION_KEY)))

    try:
        with stored_monitor(engine) as sm:
            for _ in range(3):
                run("pools", records=1, monitor=sm.monitor)
            assert sm.monitor.force_flush()
    finally:
        engine.dispose()
    assert seen, "no run was inserted"
    assert all(flag is True for _, flag in seen)


def test_a_full_queue_drops_and_counts_without_blocking(store_url: str) -> None:
    with stored_monitor(store_url, store_queue_size=50, store_flush_interval=60) as sm:
        m = sm.monitor
        writer = m._store.writer
        assert writer is not None
        writer.flush()  # the writer is idle; nothing is written for a minute now
        for _ in range(80):
            run("pools", monitor=m)
        assert writer.pending() == 50
        assert m.system_health().dropped["store_dropped_runs"] == 30
        assert m.force_flush()
        assert len(m.history("pools")) == 50


def test_runs_lost_at_shutdown_are_counted_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The database stays locked through shutdown: the writer, between retries, gives its
    batch up; every run is counted once and the loss is logged."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.1)
    path = tmp_path / "locked.db"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        with stored_monitor(
            f"sqlite:///{path}", store_flush_interval=0.05, shutdown_timeout=1.0
        ) as sm:
            m, writer = sm.monitor, sm.monitor._store.writer
            assert writer is not None
            assert m.force_flush()
            locker.execute("BEGIN EXCLUSIVE")
            for _ in range(5):
                run("pools", monitor=m)
            deadline = time.monotonic() + 10
            while writer.failures == 0:  # the writer has the batch and is retrying
                assert time.monotonic() < deadline
                time.sleep(0.01)
            m.shutdown()
            assert m.system_health().dropped["store_dropped_runs"] == 5
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    assert any("5 items not written" in r.getMessage() for r in caplog.records)


def test_runs_at_shutdown_while_sqlite_is_locked_are_stored_or_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the write lock (a backup, a long migration) at shutdown,
    and lets go just after: the writer, still inside its BEGIN IMMEDIATE, then writes the
    batch that shutdown() already counted as lost."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 3.0)
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        with stored_monitor(url, store_flush_interval=3600, shutdown_timeout=1.0) as sm:
            m, writer = sm.monitor, sm.monitor._store.writer
            assert writer is not None and m.force_flush() is True
            locker.execute("BEGIN EXCLUSIVE")
            for _ in range(20):
                run("pools", monitor=m)
            m.shutdown()  # flush times out; the writer is inside BEGIN IMMEDIATE
            locker.execute("COMMIT")
            assert writer._worker.stop(10)  # the writer thread ended
            dropped = m.system_health().dropped["store_dropped_runs"]
    finally:
        locker.close()
    [(count,)] = sql_rows(url, "SELECT count(*) FROM execution_history")
    assert count + dropped == 20, f"{count} stored and {dropped} counted as lost, of 20"
    if dropped:  # every loss at shutdown is logged, whoever counted it
        assert any("not written" in r.getMessage() for r in caplog.records)


def test_a_flush_waiting_when_shutdown_gives_up_returns_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """force_flush() on one thread while the database is locked; shutdown() on another
    gives up on the batch. The waiting flush must not sit out its whole timeout."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.1)
    path = tmp_path / "marker.db"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    result: list[tuple[bool, float]] = []
    try:
        with stored_monitor(
            f"sqlite:///{path}", store_flush_interval=3600, shutdown_timeout=1.0
        ) as sm:
            m, writer = sm.monitor, sm.monitor._store.writer
            assert writer is not None and m.force_flush()
            locker.execute("BEGIN EXCLUSIVE")
            run("pools", monitor=m)

            def flush() -> None:
                started = time.monotonic()
                result.append((writer.flush(8.0), time.monotonic() - started))

            waiter = threading.Thread(target=flush)
            waiter.start()
            deadline = time.monotonic() + 10
            while writer.failures == 0:  # the writer took the run and the flush marker
                assert time.monotonic() < deadline
                time.sleep(0.01)
            m.shutdown()
            waiter.join(40)
        assert m.system_health().dropped["store_dropped_runs"] == 1
    finally:
        locker.close()
    [(flushed, waited)] = result
    assert flushed is False
    assert waited < 4, f"flush() waited {waited:.1f} s after shutdown() gave up"


def test_a_retried_batch_after_a_split_does_not_duplicate_metric_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, internal_errors: list[Any]
) -> None:
    """One refused row splits a batch into single writes; the database goes away during
    them (a real lock, see test_outage.py); the whole batch is then retried."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.1)
    path = tmp_path / "split.db"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    store = Store(create_store_engine(f"sqlite:///{path}"), service_name="split")
    calls = 0

    write = store.write

    def locking_write(runs: Any, *args: Any, **kwargs: Any) -> None:
        # Counts every Store.write that has runs, before it connects.
        nonlocal calls
        if runs:
            calls += 1
            if calls == 2:  # the single write of the run, after the split
                locker.execute("BEGIN EXCLUSIVE")
            elif calls == 3:  # the retry of the whole batch
                locker.execute("COMMIT")
        write(runs, *args, **kwargs)

    monkeypatch.setattr(store, "write", locking_write)
    writer = StoreWriter(store, queue_size=100, batch_size=100, interval=3600)
    try:
        store.ensure_schema()
        now = datetime.now(timezone.utc)
        writer.put(METRIC, metric_point("good", now))
        writer.put(METRIC, metric_point("refused", now, value=None))  # NOT NULL
        writer.put(RUN, finished("pools", now))
        assert writer.flush(30) is True
        assert writer.shutdown(5)
        names = sorted(r["name"] for r in rows(store.engine, performance_metrics))
    finally:
        locker.close()
        store.close()  # last: a read after it would open a connection nobody closes
    assert internal_errors == []
    assert names == ["good"], names
    assert (writer.rejected, writer.written[METRIC], writer.written[RUN]) == (1, 1, 1)


def test_batches_of_any_size_share_a_few_statements(tmp_path: Path) -> None:
    """sqlite3 keeps a prepared statement per SQL text, a megabyte or more for an INSERT
    of hundreds of runs: batches of every size from 1 to 300 must not each add one (a
    statement per remainder kept about 100 MB alive in a soak)."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'sizes.db'}")
    try:
        with stored_monitor(engine, store_flush_interval=3600) as sm, StatementLog(engine) as log:
            for size in range(1, 301):
                for _ in range(size):
                    run("pools", monitor=sm.monitor)
                assert sm.monitor.force_flush()
        written = {s for s in log.statements if s.upper().startswith("INSERT INTO EXECUTION")}
        looked_up = {s for s in log.statements if "WHERE EXECUTION_ID IN" in s.upper()}
        assert len(written) <= 10
        assert len(looked_up) <= 11
        assert len(rows(engine, execution_history)) == sum(range(1, 301))
    finally:
        engine.dispose()


def test_a_writer_behind_catches_up_in_larger_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six batches queued behind a locked database are written in a couple of
    transactions, not six: what a transaction costs besides its rows is paid once."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.05)
    monkeypatch.setattr(gecko_otel.store.writer, "BACKOFF_MAX", 0.05)
    path = tmp_path / "behind.db"
    engine = create_store_engine(f"sqlite:///{path}")
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    inserts = 0

    @event.listens_for(engine, "commit")
    def _count(_conn: Any) -> None:
        nonlocal inserts
        inserts += 1

    try:
        with stored_monitor(engine, store_batch_size=1000, store_flush_interval=0.05) as sm:
            m = sm.monitor
            assert m.force_flush()
            inserts = 0
            locker.execute("BEGIN EXCLUSIVE")
            for _ in range(6000):
                run("pools", monitor=m)
            locker.execute("COMMIT")
            assert m.force_flush()
            assert len(rows(engine, execution_history)) == 6000
    finally:
        locker.close()
        engine.dispose()
    assert 1 <= inserts <= 3
