"""Guarantee: when shutdown gives up on a database that stalls, every item not stored is
counted as lost, exactly once, by the time ``shutdown()`` returns.

The writer used to leave the batch it was writing out of the shutdown's count ("the
thread's to count"): with the database stuck, 1,001 runs were lost and the log said 672,
and a process ending right after shutdown never counted the rest. Now the batch in
flight is counted at once, and the writer, if it gets through later, rolls it back
rather than storing it a second time in the books; if its attempt fails instead, it does
not count it again. Either way ``produced == stored + counted``, exactly.

The stall is real: another connection holds the SQLite file's write lock
(``BEGIN EXCLUSIVE``, as a backup or another program would) while runs are queued and
the writer is inside ``BEGIN IMMEDIATE`` with a batch.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

import gecko_otel.store.engine
from gecko_otel import MonitorConfig
from support.store_procs import build_monitor, one_run

RUNS = 1000
BATCH = 100


def stored(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        return int(connection.execute("SELECT count(*) FROM execution_history").fetchone()[0])


@pytest.mark.parametrize(
    "lock_released", [True, False], ids=["writer-gets-through-later", "writer-fails-later"]
)
def test_a_batch_in_flight_at_a_stalled_shutdown_is_counted_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    lock_released: bool,
) -> None:
    # Each attempt of the writer waits this long for the lock, then fails (read when the
    # engine is created; 30 s by default).
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 1.5)
    path = tmp_path / "stalled.db"
    config = MonitorConfig(
        store_batch_size=BATCH, store_flush_interval=3600.0, min_runs_for_rate=10**9
    )
    monitor = build_monitor(f"sqlite:///{path}", "stalled", config=config)
    writer = monitor._store.writer  # type: ignore[attr-defined]
    one_run(monitor, "stalled-pools")
    assert monitor.force_flush(10_000)
    produced = 1

    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(RUNS):
            one_run(monitor, "stalled-pools")
        produced += RUNS
        # A full batch woke the writer: wait until it holds one, stuck on the lock.
        deadline = time.monotonic() + 10
        while writer.pending() == len(writer._queue):  # nothing in flight yet
            assert time.monotonic() < deadline, "the writer never took a batch"
            time.sleep(0.005)
        thread = writer._worker._thread
        assert isinstance(thread, threading.Thread)

        caplog.set_level(logging.ERROR, logger="gecko_otel.store")
        monitor.shutdown(timeout_millis=300)
        counted = monitor.system_health().dropped["store_dropped_runs"]
        # By the time shutdown returns, everything not stored is counted, and logged.
        assert stored(path) + counted == produced
        [line] = [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()]
        assert re.search(rf"; {counted} items not written", line), line

        if lock_released:
            locker.execute("ROLLBACK")  # the abandoned writer's BEGIN now succeeds
        thread.join(30)  # its attempt ends: stored after all, or failed
        assert not thread.is_alive()
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()

    # Whichever way the abandoned write ended, nothing was stored and counted both, and
    # nothing counted twice.
    assert monitor.system_health().dropped["store_dropped_runs"] == counted
    assert stored(path) + counted == produced
