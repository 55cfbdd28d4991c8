"""Review of the persistent store: each test here failed because of a defect (or, where
it says so, pins risky behaviour that turned out correct)."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import gecko_otel._monitor
import gecko_otel.store.engine
from gecko_otel import (
    AlertLevel,
    AlertState,
    CollectionStatus,
    CollectorThresholds,
    ExecutionStatus,
    MonitorConfig,
    track_collection,
)
from gecko_otel._monitor import Monitor
from gecko_otel.store.engine import create_store_engine
from gecko_otel.store.schema import execution_history, performance_metrics
from gecko_otel.store.store import Store
from gecko_otel.store.writer import METRIC, RUN, StoreWriter
from gecko_otel.testing import FakeClock
from support.runs import run
from support.store_helpers import direct_store, finished, metric_point, rows, stored_monitor
from support.store_procs import build_monitor, one_run, sql_rows


def test_nan_metadata_run_is_stored(store_url: str, engine: Engine) -> None:
    """Float metadata passes the sanitizer as is, NaN included (a 0/0 ratio)."""
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        with track_collection("ratios", monitor=m) as r:
            r.set_metadata("hit_ratio", float("nan"))
            r.add_records(1)
        assert m.force_flush() is True
        assert m.system_health().dropped["store_rejected"] == 0
        [record] = m.history("ratios")
        # JSON has no NaN: stored (on both backends alike) as its text.
        assert record.metadata["hit_ratio"] == "nan"
    assert len(rows(engine, execution_history)) == 1


def test_undecodable_path_in_error_message_is_stored(
    store_url: str, engine: Engine, internal_errors: list[Any]
) -> None:
    """An exception message with a surrogate-escaped byte (os.fsdecode of a file name)."""
    path = os.fsdecode(b"/data/pools-\xff.csv")
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        try:
            with track_collection("files", monitor=m) as r:
                r.set_metadata("file", path)
                raise FileNotFoundError(f"no such file: {path}")
        except FileNotFoundError:
            pass
        assert m.force_flush() is True
        assert m.system_health().dropped["store_rejected"] == 0
        [record] = m.history("files")
        assert record.status is ExecutionStatus.FAILURE
        assert record.error_message == "no such file: /data/pools-\ufffd.csv"
    assert internal_errors == []
    assert len(rows(engine, execution_history)) == 1


def test_runs_at_shutdown_while_sqlite_is_locked_are_stored_or_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds the write lock (a backup, a long migration) at shutdown,
    and lets go just after: the writer, still inside its BEGIN IMMEDIATE, then writes the
    batch that shutdown() already counted as lost."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 3.0)
    monkeypatch.setattr(gecko_otel._monitor, "STORE_SHUTDOWN_TIMEOUT", 0.5)
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        with stored_monitor(url, store_flush_interval=3600) as sm:
            m, writer = sm.monitor, sm.monitor._writer
            assert writer is not None and m.force_flush() is True
            locker.execute("BEGIN EXCLUSIVE")
            for _ in range(20):
                run("pools", monitor=m)
            m.shutdown()  # flush times out; the writer is inside BEGIN IMMEDIATE
            locker.execute("COMMIT")
            thread = writer._thread
            assert thread is not None
            thread.join(10)
            dropped = m.system_health().dropped["store_dropped_runs"]
    finally:
        locker.close()
    [(count,)] = sql_rows(url, "SELECT count(*) FROM execution_history")
    assert count + dropped == 20, f"{count} stored and {dropped} counted as lost, of 20"
    if dropped:  # every loss at shutdown is logged, whoever counted it
        assert any("not written" in r.getMessage() for r in caplog.records)


def test_a_retried_batch_after_a_split_does_not_duplicate_metric_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, internal_errors: list[Any]
) -> None:
    """One refused row splits a batch into single writes; the database goes away during
    them (a real lock, see test_store_outage); the whole batch is then retried."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.1)
    path = tmp_path / "split.db"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    store = Store(create_store_engine(f"sqlite:///{path}"), service_name="split")
    calls = 0

    def health_of(_name: str) -> tuple[str | None, float | None]:
        # Called by every Store.write that has runs, before it connects.
        nonlocal calls
        calls += 1
        if calls == 2:  # the single write of the run, after the split
            locker.execute("BEGIN EXCLUSIVE")
        elif calls == 3:  # the retry of the whole batch
            locker.execute("COMMIT")
        return None, None

    writer = StoreWriter(store, queue_size=100, batch_size=100, interval=3600, health_of=health_of)
    try:
        store.ensure_schema()
        now = datetime.now(timezone.utc)
        writer.put(METRIC, metric_point("good", now))
        writer.put(METRIC, metric_point("refused", now, value=None))  # NOT NULL
        writer.put(RUN, finished("pools", now))
        assert writer.flush(30) is True
        assert writer.shutdown(5)
    finally:
        locker.close()
        store.close()
    assert internal_errors == []
    names = sorted(r["name"] for r in rows(store.engine, performance_metrics))
    assert names == ["good"], names
    assert (writer.rejected, writer.written[METRIC], writer.written[RUN]) == (1, 1, 1)


# ------------------------------------------------------------------------- restore


def test_restart_keeps_the_stale_timer_of_a_configured_collector_that_never_succeeded(
    store_url: str,
) -> None:
    """A collector with thresholds in MonitorConfig.collectors has an evaluator state
    before the restore runs; the restore must still take its first run from the store."""
    clock = FakeClock()
    settings: dict[str, Any] = {
        "collectors": {"pools": CollectorThresholds(stale_after=3600)},
        "max_consecutive_failures": 100,
    }
    with stored_monitor(store_url, clock=clock, **settings) as sm:
        run("pools", fail=True, monitor=sm.monitor)
        clock.advance(3700)
        sm.monitor.evaluate()
        assert [a.rule for a in sm.monitor.alerts()] == ["stale"]
    with stored_monitor(store_url, clock=clock, **settings) as sm:
        # A Monitor that kept running would still call it stale: nothing ever succeeded.
        assert "stale" in sm.monitor.health("pools")["pools"].rules
        sm.monitor.evaluate()
        assert [a.rule for a in sm.monitor.alerts()] == ["stale"]
        assert sm.monitor.force_flush()
        assert [n.notification for n in sm.notifications] == []  # no "resolved"


def test_restart_keeps_an_overlap_that_no_run_has_cleared(store_url: str) -> None:
    clock = FakeClock()
    with stored_monitor(store_url, clock=clock) as sm:
        sm.monitor.record_not_started("pools", "skipped", scheduled_time=datetime.now(timezone.utc))
        assert sm.monitor.health("pools")["pools"].rules == ("overlap",)
        assert [a.rule for a in sm.monitor.alerts()] == ["overlap"]
    with stored_monitor(store_url, clock=clock) as sm:
        assert [a.rule for a in sm.monitor.alerts()] == ["overlap"]  # restored, firing
        # ... so health must say so, as it did before the restart.
        health = sm.monitor.health("pools")["pools"]
        assert (health.status, health.rules) == (CollectionStatus.WARNING, ("overlap",))


# ------------------------------------------------------------------------- collection_metadata


@pytest.mark.parametrize("late", ["success", "failures"])
def test_streak_of_two_writers_counts_failures_after_the_newest_success(
    store_url: str, late: str
) -> None:
    """Runs in time order F1 S2 F3 (two processes, each writing in its own batches):
    one failure follows the newest success, whichever batch reaches the database last."""
    config = MonitorConfig(store_flush_interval=3600.0, min_runs_for_rate=10**9)
    a = build_monitor(store_url, "streak-a", config=config)
    b = build_monitor(store_url, "streak-b", config=config)
    try:
        if late == "success":  # A stores F1, F3 first; B's S2 comes last
            one_run(a, "shared", fail=True)
            one_run(b, "shared")
            one_run(a, "shared", fail=True)
            assert a.force_flush(10_000)
            assert b.force_flush(10_000)
        else:  # B stores S2 first; A's F1, F3 come last in one batch
            one_run(a, "shared", fail=True)
            one_run(b, "shared")
            assert b.force_flush(10_000)
            one_run(a, "shared", fail=True)
            assert a.force_flush(10_000)
    finally:
        a.shutdown()
        b.shutdown()
    statuses = [s for (s,) in sql_rows(store_url, _BY_START)]
    assert statuses == ["failure", "success", "failure"]
    assert sql_rows(store_url, "SELECT consecutive_failures FROM collection_metadata") == [(1,)]


_BY_START = "SELECT status FROM execution_history ORDER BY start_time"


# ------------------------------------------------------------------------- window buckets


def test_window_buckets_match_the_evaluators_buckets_at_boundaries(store_url: str) -> None:
    """Restored health puts each run in bucket int(end // width), as the evaluator does."""
    width = 900.0
    first = int(time.time() // width) - 40
    runs = []
    for k in range(first, first + 30):  # runs ending exactly on a bucket boundary
        start = datetime.fromtimestamp(k * width - 1, timezone.utc)
        runs.append(finished("edge", start, duration=1.0))
    with direct_store(store_url) as store:
        store.write(runs, [], [])
        since = datetime.fromtimestamp(first * width - 10, timezone.utc)
        got = sorted(b.bucket for b in store.window_buckets(since, width))
    assert got == list(range(first, first + 30))


# ------------------------------------------------------------------------- alert sync


def test_alert_sync_does_not_reacknowledge_an_escalation_still_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer runs the alert sync after writing the full batches it woke for; the
    escalation's snapshot can still be queued then, and the stored row still says
    "acknowledged" (the acknowledgement made before the escalation)."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.2)
    path = tmp_path / "sync.db"
    clock = FakeClock()
    settings: dict[str, Any] = {
        "store_batch_size": 3,
        "store_flush_interval": 3600,
        "watchdog_interval": 0.01,  # the sync is due at every pass of the writer
        "stale_after": 3600,
    }
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        with stored_monitor(f"sqlite:///{path}", clock=clock, **settings) as sm:
            m, writer = sm.monitor, sm.monitor._writer
            assert writer is not None
            run("pools", monitor=m)
            clock.advance(3600)
            m.evaluate()
            [alert] = m.alerts()
            assert (alert.rule, alert.level) == ("stale", AlertLevel.WARNING)
            assert m.acknowledge_alert(alert.id)
            assert m.force_flush()  # stored: acknowledged

            locker.execute("BEGIN EXCLUSIVE")  # the next batch waits for the database
            now = datetime.now(timezone.utc)
            for i in range(3):  # a full batch (metric points, as the exporter puts them)
                writer.put(METRIC, metric_point(f"p{i}", now))
            deadline = time.monotonic() + 10
            while writer.failures == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            clock.advance(3600)  # twice stale_after: escalates to critical, firing again
            m.evaluate()
            [alert] = m._alerting.alerts()
            assert (alert.level, alert.state) == (AlertLevel.CRITICAL, AlertState.FIRING)
            locker.execute("COMMIT")
            deadline = time.monotonic() + 10
            while writer.written[METRIC] < 3:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.3)  # a few more passes of the writer
            [alert] = m.alerts()
            assert (alert.level, alert.state) == (AlertLevel.CRITICAL, AlertState.FIRING)
    finally:
        locker.close()


# ------------------------------------------------------------------------- interpreter exit

_EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from gecko_otel import track_collection
    from gecko_otel._monitor import Monitor
    from gecko_otel.store.metrics import store_metric_reader

    # As store_metric_reader's docs say for a MeterProvider of your own (SDK defaults:
    # the providers shut down at exit, which makes their final collection).
    reader, exporter = store_metric_reader(60.0)
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    monitor = Monitor(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        database=sys.argv[1],
        metric_exporter=exporter,
        watchdog=False,
    )
    with track_collection("pools", monitor=monitor) as run:
        run.add_records(3)
    monitor.record_metric("pools_seen", 7.0)
    """
)


def test_metric_points_of_the_final_collection_at_exit_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sql_rows(url, "SELECT count(*) FROM execution_history") == [(1,)]
    assert "dropped" not in done.stderr, done.stderr
    names = {n for (n,) in sql_rows(url, "SELECT name FROM performance_metrics")}
    assert "pools_seen" in names, names


def test_restore_leaves_no_orphan_of_two_firing_alerts_of_one_rule(store_url: str) -> None:
    """Two replicas of one service both fired consecutive_failures for a collector; the
    service restarts. Once the collector recovers, no alert of that rule stays active."""
    with (
        stored_monitor(store_url, service_name="svc", instance="replica-1") as one,
        stored_monitor(store_url, service_name="svc", instance="replica-2") as two,
    ):
        for sm in (one, two):
            for _ in range(3):
                run("pools", fail=True, monitor=sm.monitor)
        assert two.monitor.force_flush()
        assert len(one.monitor.alerts()) == 2  # its own and the other replica's
    with stored_monitor(store_url, service_name="svc", instance="replica-1") as sm:
        run("pools", monitor=sm.monitor)  # recovery_threshold 1: the rule clears
        assert sm.monitor.health("pools")["pools"].consecutive_failures == 0
        assert sm.monitor.alerts() == []


# ------------------------------------------------------------------------- fork


def _child_runs(url: str) -> None:  # pragma: no cover - runs in the forked child
    monitor = _FORK_PARENT[0]
    for _ in range(10):
        run("forked-pools", monitor=monitor)
    # Returns: multiprocessing ends the child with os._exit(), without atexit handlers.


_FORK_PARENT: list[Monitor] = []


def test_runs_of_a_multiprocessing_child_reach_the_store(store_url: str) -> None:
    """A collector run in a multiprocessing.Process (the "fork" start method, Linux's
    default before Python 3.14) after the parent set up its Monitor."""
    config = MonitorConfig(min_runs_for_rate=10**9)
    monitor = build_monitor(store_url, "mp", config=config)
    _FORK_PARENT.append(monitor)
    try:
        assert monitor.force_flush(10_000)
        child = multiprocessing.get_context("fork").Process(target=_child_runs, args=(store_url,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        # Whatever the child queued is written, or counted where someone can see it.
        assert sql_rows(store_url, "SELECT count(*) FROM execution_history") == [(10,)]
    finally:
        _FORK_PARENT.clear()
        monitor.shutdown()


def test_a_flush_waiting_when_shutdown_gives_up_returns_at_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """force_flush() on one thread while the database is locked; shutdown() on another
    gives up on the batch. The waiting flush must not sit out its whole timeout."""
    monkeypatch.setattr(gecko_otel.store.engine, "SQLITE_BUSY_TIMEOUT", 0.1)
    monkeypatch.setattr(gecko_otel._monitor, "STORE_SHUTDOWN_TIMEOUT", 0.5)
    path = tmp_path / "marker.db"
    locker = sqlite3.connect(path, isolation_level=None, timeout=10)
    result: list[tuple[bool, float]] = []
    try:
        with stored_monitor(f"sqlite:///{path}", store_flush_interval=3600) as sm:
            m, writer = sm.monitor, sm.monitor._writer
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


def test_restart_with_a_short_success_rate_window(store_url: str) -> None:
    """success_rate_window=60 s: 96 buckets of 0.625 s, so bucket ids pass 2**31."""
    with stored_monitor(store_url, success_rate_window=60) as sm:
        run("pools", monitor=sm.monitor)
    with stored_monitor(store_url, success_rate_window=60) as sm:
        assert sm.monitor.health("pools")["pools"].runs_in_window == 1


# ------------------------------------------------------------------------- coverage (passes)


def test_sqlite_fast_path_stores_what_sqlalchemy_would(tmp_path: Path) -> None:
    """Store._sqlite_run_values renders rows itself; every stored value must be what the
    SQLAlchemy types make of Store.run_row (times, JSON with tuples, NUL, NaN, no end)."""
    path = tmp_path / "fast.db"
    start = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc)
    metadata = [
        {},
        {"t": (1, 2), "s": ("x\x00", "y"), "f": 1.5, "b": True, "nan": float("nan")},
        {"k\x00ey": "v", "u": "é🦎\u202e", "big": 2**62, "floats": (1.0, -0.0)},
    ]
    runs = [
        finished(
            f"c\x00{i}",
            start + timedelta(microseconds=7 * i),
            status=ExecutionStatus.FAILURE,
            duration=1e-7 * (i + 1),
            records=i,
            warnings=("w\x00",),
            errors=("e",),
            metadata=meta,
            error_type="T\x00",
            error_message="m\x00",
        )
        for i, meta in enumerate(metadata)
    ]
    runs.append(finished("c", start, status=ExecutionStatus.MISSED, duration=None))
    store = Store(
        create_store_engine(f"sqlite:///{path}"), service_name="s", service_instance_id="i"
    )
    try:
        store.ensure_schema()
        store.write(runs, [], [])  # the fast path
        with store.engine.begin() as conn:
            for r in runs:  # the SQLAlchemy path, under another id
                conn.execute(
                    execution_history.insert(),
                    {**store.run_row(r), "execution_id": "B" + r.execution_id},
                )
    finally:
        store.close()
    raw = sqlite3.connect(path)
    try:
        columns = [c[1] for c in raw.execute("PRAGMA table_info(execution_history)")]
        wanted = [c for c in columns if c not in ("id", "execution_id")]
        query = f"SELECT {', '.join(wanted)} FROM execution_history WHERE execution_id = ?"
        for r in runs:
            fast = raw.execute(query, (r.execution_id,)).fetchone()
            typed = raw.execute(query, ("B" + r.execution_id,)).fetchone()
            assert fast == typed, dict(zip(wanted, zip(fast, typed, strict=True), strict=True))
    finally:
        raw.close()


def test_store_current_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    """``python -m gecko_otel.store current`` only inspects: a mistyped path must not
    leave a new (empty, WAL-mode) database file behind, nor claim it is an empty store."""
    path = tmp_path / "typo.db"
    done = subprocess.run(
        [sys.executable, "-m", "gecko_otel.store", "current", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert not path.exists(), (done.returncode, done.stdout, done.stderr)
    assert done.returncode != 0
