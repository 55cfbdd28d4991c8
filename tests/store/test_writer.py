"""The background writer's own promises: no tracing of its writes, bounded queue, flush."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from sqlalchemy import event

import gecko_otel._monitor
import gecko_otel.store.engine
from gecko_otel.store.engine import create_store_engine
from support.runs import run
from support.store_helpers import stored_monitor


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
        writer = m._writer
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
    monkeypatch.setattr(gecko_otel._monitor, "STORE_SHUTDOWN_TIMEOUT", 0.5)
    path = tmp_path / "locked.db"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        with stored_monitor(f"sqlite:///{path}", store_flush_interval=0.05) as sm:
            m, writer = sm.monitor, sm.monitor._writer
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
