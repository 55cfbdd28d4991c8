"""The store shared by several processes: concurrent writers, a killed process, fork().

Real SQLite files and real PostgreSQL databases (``store_url``); children are separate
interpreters ("spawn", entry points in ``store_procs.py``) or, for the fork test, a real
``os.fork()``. Every child is joined with a timeout and killed if it hangs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from pathlib import Path

import pytest

from gecko_otel import Alert, AlertState, CollectionStatus, MonitorConfig, Notification
from gecko_otel._guard import internal_error_count
from gecko_otel._monitor import Monitor
from gecko_otel.testing import FakeClock
from support.forks import wait_child
from support.runs import run
from support.store_procs import (
    CHILD_TIMEOUT,
    build_monitor,
    failing_then_killed,
    fleet_writer,
    join_all,
    one_run,
    own_fails,
    shared_plan,
    sigkill,
    spawn,
    spawn_context,
    sql_rows,
    sql_value,
    wait_for_file,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Runs of the shared collector per process, and of each process's own collector.
FLEET_RUNS = 5000
OWN_RUNS = 2000
SHARED = "shared-pools"


def test_two_processes_write_one_database_at_once(store_url: str, tmp_path: Path) -> None:
    ctx = spawn_context()
    start, finish = ctx.Barrier(2), ctx.Barrier(2)
    services = ("fleet-a", "fleet-b")
    children = []
    for service in services:
        out = tmp_path / f"{service}.json"
        process = spawn(
            fleet_writer,
            store_url,
            service,
            SHARED,
            f"own-{service}",
            FLEET_RUNS,
            OWN_RUNS,
            start,
            finish,
            str(out),
        )
        children.append((process, out))
    join_all(children)

    plan = shared_plan(FLEET_RUNS)
    failed = sum(fails for fails, _ in plan)
    records = sum(n for _, n in plan)
    assert 0 < failed < FLEET_RUNS

    # execution_history: every run of both processes, once.
    total, distinct = sql_rows(
        store_url,
        "SELECT count(*), count(DISTINCT execution_id) FROM execution_history "
        "WHERE collector_type = :c",
        c=SHARED,
    )[0]
    assert (total, distinct) == (2 * FLEET_RUNS, 2 * FLEET_RUNS)
    per_service = {
        (service, status): (count, stored_records)
        for service, status, count, stored_records in sql_rows(
            store_url,
            "SELECT service_name, status, count(*), sum(records_collected) "
            "FROM execution_history WHERE collector_type = :c GROUP BY service_name, status",
            c=SHARED,
        )
    }
    assert per_service == {
        **{(s, "success"): (FLEET_RUNS - failed, records) for s in services},
        **{(s, "failure"): (failed, 0) for s in services},
    }

    # collection_metadata: the upserts of both processes added up, none lost.
    [row] = sql_rows(
        store_url,
        "SELECT total_executions, successful_executions, failed_executions, total_records, "
        "consecutive_failures, last_status, first_run, last_run "
        "FROM collection_metadata WHERE collector_type = :c",
        c=SHARED,
    )
    first, last = sql_rows(
        store_url,
        "SELECT min(start_time), max(start_time) FROM execution_history WHERE collector_type = :c",
        c=SHARED,
    )[0]
    assert tuple(row[:6]) == (
        2 * FLEET_RUNS,
        2 * (FLEET_RUNS - failed),
        2 * failed,
        2 * records,
        0,  # both processes ended with a success after every failure was stored
        "success",
    )
    assert str(row.first_run) == str(first)
    assert str(row.last_run) == str(last)

    own_failed = sum(own_fails(i) for i in range(OWN_RUNS))
    own = sql_rows(
        store_url,
        "SELECT m.collector_type, m.service_name, m.total_executions, m.failed_executions, "
        "(SELECT count(*) FROM execution_history h WHERE h.collector_type = m.collector_type "
        " AND h.service_name = m.service_name) "
        "FROM collection_metadata m WHERE m.collector_type <> :c ORDER BY 1",
        c=SHARED,
    )
    assert [tuple(r) for r in own] == [
        (f"own-{s}", s, OWN_RUNS, own_failed, OWN_RUNS) for s in services
    ]

    # A third process's Monitor answers from the shared database.
    reader = build_monitor(store_url, "fleet-reader")
    try:
        stats = reader.statistics(SHARED)
        assert stats.total_executions == 2 * FLEET_RUNS
        assert stats.failed_executions == 2 * failed
        assert stats.total_records_collected == 2 * records
        assert reader.collector_types() == sorted([SHARED, *(f"own-{s}" for s in services)])
    finally:
        reader.shutdown()


# --------------------------------------------------------------------------- restart

SERVICE = "restart-svc"
COOLDOWN = 60.0
RESTART_AFTER = 10.0  # seconds of the restarted Monitor's clock after the child's


def test_restart_after_sigkill_keeps_streak_and_firing_alert(
    store_url: str, tmp_path: Path
) -> None:
    t0 = float(int(time.time()))  # whole seconds: stored and read back exactly
    out = tmp_path / "notifications.jsonl"
    child = spawn(failing_then_killed, store_url, SERVICE, "pools", t0, COOLDOWN, 2, str(out))
    ready = Path(f"{out}.ready")
    wait_for_file(ready, child, out, CHILD_TIMEOUT)
    assert json.loads(ready.read_text(encoding="utf-8"))["pending"] >= 2  # runs not yet stored
    sigkill(child)

    notified = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(n["kind"], n["n"]) for n in notified] == [("firing", 1)]
    alert_id = notified[0]["id"]

    # What the killed process left: the flushed runs and alert; the queued runs are gone.
    assert sql_value(store_url, "SELECT count(*) FROM execution_history") == 3
    assert sql_rows(
        store_url,
        "SELECT consecutive_failures, failed_executions, service_name FROM collection_metadata",
    ) == [(3, 3, SERVICE)]
    [stored] = sql_rows(store_url, "SELECT id, state, notifications, rule FROM system_alerts")
    assert tuple(stored) == (alert_id, "firing", 1, "consecutive_failures")

    clock = FakeClock(t0 + RESTART_AFTER)
    notes: list[Alert] = []
    config = MonitorConfig(alert_cooldown=COOLDOWN, recovery_threshold=2, min_runs_for_rate=10**9)
    monitor = build_monitor(store_url, SERVICE, config=config, clock=clock, handlers=[notes.append])
    try:

        def notifications() -> list[tuple[Notification | None, str, int]]:
            assert monitor.force_flush(10_000)
            return [(a.notification, a.id, a.notifications) for a in notes]

        health = monitor.health("pools")["pools"]
        assert health.consecutive_failures == 3
        assert health.status is CollectionStatus.CRITICAL
        [alert] = monitor.alerts()
        assert (alert.id, alert.state, alert.notifications) == (alert_id, AlertState.FIRING, 1)

        # Still failing: the same alert is updated, nobody is told again.
        one_run(monitor, "pools", fail=True)
        assert notifications() == []
        assert monitor.health("pools")["pools"].consecutive_failures == 4
        [alert] = monitor.alerts()
        assert (alert.id, alert.notifications) == (alert_id, 1)
        assert alert.message == "4 consecutive failed runs (threshold 3)"

        # A repeat exactly one cooldown after the child's notification, not before.
        monitor.evaluate()
        clock.advance(COOLDOWN - RESTART_AFTER - 1)
        monitor.evaluate()
        assert notifications() == []
        clock.advance(1)
        monitor.evaluate()
        assert notifications() == [(Notification.REPEAT, alert_id, 2)]

        # recovery_threshold (2) good runs resolve that same alert.
        one_run(monitor, "pools")
        assert [a.id for a in monitor.alerts()] == [alert_id]
        one_run(monitor, "pools")
        assert notifications()[1:] == [(Notification.RESOLVED, alert_id, 3)]
        assert monitor.alerts() == []
        [(state, count, resolved_at)] = sql_rows(
            store_url,
            "SELECT state, notifications, resolved_at FROM system_alerts WHERE id = :i",
            i=alert_id,
        )
        assert (state, count) == ("resolved", 3)
        assert resolved_at is not None
        assert sql_rows(store_url, "SELECT consecutive_failures FROM collection_metadata") == [(0,)]
    finally:
        monitor.shutdown()


# --------------------------------------------------------------------------- fork


def test_fork_child_writes_only_its_own_runs(store_url: str, tmp_path: Path) -> None:
    config = MonitorConfig(store_flush_interval=3600.0, min_runs_for_rate=10**9)
    monitor = build_monitor(store_url, "forking", config=config)
    try:
        parent_ids = [one_run(monitor, "forked-parent")]
        assert monitor.force_flush(10_000)  # the writer thread now sleeps for an hour
        parent_ids += [one_run(monitor, "forked-parent", fail=i % 4 == 0) for i in range(49)]
        # The 49 runs are queued, not written, when we fork.
        assert sql_value(store_url, "SELECT count(*) FROM execution_history") == 1
        error = tmp_path / "child.error"
        errors_before = internal_error_count()

        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; never returns into pytest
            code = 1
            try:
                for i in range(100):
                    one_run(monitor, "forked-child", fail=i % 5 == 0)
                monitor.shutdown()
                assert internal_error_count() == errors_before, "internal error in the child"
                code = 0
            except BaseException:
                error.write_text(traceback.format_exc(), encoding="utf-8")
            finally:
                os._exit(code)

        parent_ids += [one_run(monitor, "forked-parent", fail=i % 4 == 0) for i in range(50)]
        code = wait_child(pid, CHILD_TIMEOUT)
        assert code == 0, error.read_text(encoding="utf-8") if error.exists() else code
        assert monitor.force_flush(10_000)
    finally:
        monitor.shutdown()

    rows = sql_rows(
        store_url,
        "SELECT collector_type, count(*), count(DISTINCT execution_id) "
        "FROM execution_history GROUP BY collector_type ORDER BY 1",
    )
    assert [tuple(r) for r in rows] == [("forked-child", 100, 100), ("forked-parent", 100, 100)]
    stored_parent = [
        r[0]
        for r in sql_rows(
            store_url,
            "SELECT execution_id FROM execution_history WHERE collector_type = 'forked-parent'",
        )
    ]
    assert sorted(stored_parent) == sorted(parent_ids)
    # A run written twice would be skipped by the unique execution id but counted twice here.
    metadata = sql_rows(
        store_url,
        "SELECT collector_type, total_executions, failed_executions FROM collection_metadata "
        "ORDER BY 1",
    )
    assert [tuple(r) for r in metadata] == [("forked-child", 100, 20), ("forked-parent", 100, 26)]


def _child_runs(url: str) -> None:  # pragma: no cover - runs in the forked child
    monitor = _FORK_PARENT[0]
    for _ in range(10):
        run("forked-pools", monitor=monitor)


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


def test_late_batch_of_old_failures_does_not_extend_a_streak_a_newer_success_ended(
    store_url: str,
) -> None:
    # Two writers of one collector, as two processes are: each Monitor has its own engine
    # and background writer. B's writer is late (a slow flush, a short outage of its own):
    # its two failures reach the database after A stored a newer success.
    config = MonitorConfig(store_flush_interval=3600.0, min_runs_for_rate=10**9)
    a = build_monitor(store_url, "late-a", config=config)
    b = build_monitor(store_url, "late-b", config=config)
    try:
        one_run(a, "shared")
        assert a.force_flush(10_000)
        one_run(b, "shared", fail=True)
        one_run(b, "shared", fail=True)
        one_run(a, "shared")  # the newest run of all: a success
        assert a.force_flush(10_000)
        assert b.force_flush(10_000)  # B's older failures arrive last
    finally:
        a.shutdown()
        b.shutdown()
    [newest] = sql_rows(
        store_url,
        "SELECT status FROM execution_history ORDER BY start_time DESC LIMIT 1",
    )
    assert newest == ("success",)
    [row] = sql_rows(
        store_url,
        "SELECT last_status, total_executions, failed_executions, consecutive_failures "
        "FROM collection_metadata WHERE collector_type = 'shared'",
    )
    # The streak ended with A's newer success: no failure in a row after it.
    assert tuple(row) == ("success", 4, 2, 0)
