"""The database going away during 10,000 runs and coming back.

PostgreSQL: a private server is stopped after 2,000 runs and started again after 6,000.
SQLite: another connection holds the database's write lock for the same stretch (see
``test_sqlite_locked_during_runs_loses_nothing`` for why not chmod). The collector's loop
must never raise nor slow down; nothing is lost while the queue holds the backlog, and
every loss is counted exactly when it does not.
"""

from __future__ import annotations

import logging
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import gecko_otel.store.engine
import gecko_otel.store.writer
from gecko_otel import MonitorConfig
from gecko_otel._monitor import Monitor
from support.postgres import PostgresServer
from support.store_procs import build_monitor, one_run, sql_rows, sql_value

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUNS = 10_000
CHUNK = 100  # runs timed together
DOWN_AT = 2_000
UP_AT = 6_000
COLLECTOR = "outage-pools"
STORE_LOGGER = "gecko_otel.store"


def fails(i: int) -> bool:
    return i % 10 == 0


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer's backoff grows to 30 s; the server comes back within a second or two
    # here, so retry at least every half second to see it quickly.
    monkeypatch.setattr(gecko_otel.store.writer, "BACKOFF_MAX", 0.5)


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 15.0) -> None:
    """Wait until the store logged ``text`` (the writer noticed the outage)."""
    deadline = time.monotonic() + timeout
    while not any(text in r.getMessage() for r in caplog.records if r.name == STORE_LOGGER):
        assert time.monotonic() < deadline, f"no {text!r} log line within {timeout} s"
        time.sleep(0.01)


def run_through_outage(
    monitor: Monitor,
    caplog: pytest.LogCaptureFixture,
    go_down: Callable[[], object],
    come_up: Callable[[], object],
    *,
    settle: bool = False,
) -> tuple[list[float], list[float]]:
    """10,000 runs on this thread, the database down between DOWN_AT and UP_AT.

    Before the outage everything queued is written; after its first chunk the loop waits
    (untimed) until the writer has logged that the store is unavailable, so the rest of the
    outage runs while the writer is retrying, as in an outage longer than a few
    milliseconds. With ``settle``, everything queued is also written after each chunk while
    the database is up, and when it comes back (untimed): runs come no faster than the
    writer stores them, so any loss is the outage's. Returns the seconds per run of each
    chunk while the database was up, and while it was down (the switches themselves are
    not timed).
    """
    up: list[float] = []
    down: list[float] = []
    for first in range(0, RUNS, CHUNK):
        if first == DOWN_AT:
            assert monitor.force_flush(30_000)  # the outage starts with an empty queue
            go_down()
        elif first == DOWN_AT + CHUNK:
            wait_for_log(caplog, "unavailable")
        elif first == UP_AT:
            come_up()
            if settle:
                # The outage ends when the writer has caught up: until it reconnects (its
                # backoff) the queue is still full, and runs after the outage would be
                # dropped too.
                assert monitor.force_flush(30_000)
        started = time.perf_counter()
        for i in range(first, first + CHUNK):
            one_run(monitor, COLLECTOR, fail=fails(i), records=1)
        per_run = (time.perf_counter() - started) / CHUNK
        is_down = DOWN_AT <= first < UP_AT
        (down if is_down else up).append(per_run)
        if settle and not is_down:
            assert monitor.force_flush(30_000)
    return up, down


def assert_not_slower(up: list[float], down: list[float], label: str) -> None:
    # Medians over 100-run chunks shrug off the odd descheduling on a 2-core machine; the
    # first chunks (instrument creation, first writes) are left out of the "up" figure.
    median_up = statistics.median(up[2:])
    median_down = statistics.median(down)
    print(
        f"{label}: median per run up {median_up * 1e6:.1f} us, "
        f"down {median_down * 1e6:.1f} us, ratio {median_down / median_up:.2f}"
    )
    assert median_down < 2 * median_up, (median_up, median_down)


def stored_runs(url: str) -> int:
    return int(sql_value(url, "SELECT count(*) FROM execution_history"))


def test_postgres_outage_loses_nothing_with_a_large_queue(
    private_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_postgres.create_database("outage")
    caplog.set_level(logging.WARNING, logger=STORE_LOGGER)
    config = MonitorConfig(store_flush_interval=0.05, min_runs_for_rate=10**9)
    monitor = build_monitor(url, "outage-svc", config=config)
    try:
        up, down = run_through_outage(
            monitor, caplog, private_postgres.stop, private_postgres.start
        )
        assert monitor.force_flush(30_000)
        assert monitor.system_health().dropped["store_dropped_runs"] == 0
        store = monitor.export()["store"]
        assert store["write_failures"] > 0  # the outage was seen
        assert store["available"] is True
        assert store["pending"] == 0
    finally:
        monitor.shutdown()
    assert stored_runs(url) == RUNS
    assert sql_rows(url, "SELECT total_executions, failed_executions FROM collection_metadata") == [
        (RUNS, RUNS // 10)
    ]
    assert_not_slower(up, down, "postgresql outage")


def test_postgres_outage_counts_every_loss_with_a_small_queue(
    private_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_postgres.create_database("outage")
    caplog.set_level(logging.WARNING, logger=STORE_LOGGER)
    config = MonitorConfig(
        store_flush_interval=0.05, store_queue_size=1000, min_runs_for_rate=10**9
    )
    monitor = build_monitor(url, "outage-svc", config=config)
    try:
        run_through_outage(
            monitor, caplog, private_postgres.stop, private_postgres.start, settle=True
        )
        assert monitor.force_flush(30_000)
        dropped = monitor.system_health().dropped["store_dropped_runs"]
        assert monitor.export()["store"]["write_failures"] > 0
    finally:
        monitor.shutdown()
    stored = stored_runs(url)
    # 4,000 runs while down: the writer holds the first chunk's runs (at most 100) and
    # the queue 1,000 more; every other run of the outage is dropped, and none before it.
    assert 2900 <= dropped <= 3000
    assert stored + dropped == RUNS
    [(total,)] = sql_rows(url, "SELECT total_executions FROM collection_metadata")
    assert total == stored
    drop_lines = [
        r
        for r in caplog.records
        if r.name == STORE_LOGGER and r.levelno >= logging.ERROR and "dropped" in r.getMessage()
    ]
    assert drop_lines, f"{dropped} runs dropped during the outage, and no log line says so"


def test_sqlite_locked_during_runs_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # How to make a SQLite database unavailable for a while, for real, as root too: chmod
    # does not stop root (CI runs as root), and renaming the file or its directory away
    # does not stop connections that already have it open. What does stop every writer,
    # root or not, is another connection holding the write lock (BEGIN EXCLUSIVE), as a
    # backup, a long migration or another program would: the writer's BEGIN IMMEDIATE
    # waits busy_timeout and gets "database is locked". The busy timeout is cut from 30 s
    # so each attempt gives up quickly (read when the engine is created).
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.1)
    path = tmp_path / "gecko_otel.db"
    url = f"sqlite:///{path}"
    caplog.set_level(logging.WARNING, logger=STORE_LOGGER)
    config = MonitorConfig(store_flush_interval=0.05, min_runs_for_rate=10**9)
    monitor = build_monitor(url, "outage-svc", config=config)
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:

        def go_down() -> None:
            locker.execute("BEGIN EXCLUSIVE")

        def come_up() -> None:
            assert "database is locked" in monitor.export()["store"]["last_error"]
            locker.execute("COMMIT")

        up, down = run_through_outage(monitor, caplog, go_down, come_up)
        assert monitor.force_flush(30_000)
        assert monitor.system_health().dropped["store_dropped_runs"] == 0
        assert monitor.export()["store"]["write_failures"] > 0
    finally:
        locker.close()
        monitor.shutdown()
    assert stored_runs(url) == RUNS
    assert sql_rows(url, "SELECT total_executions, failed_executions FROM collection_metadata") == [
        (RUNS, RUNS // 10)
    ]
    assert_not_slower(up, down, "sqlite locked")
