"""Guarantee: a child forked while the parent's writer is in the middle of a write gets
clean connections and a working writer, and stores its runs; the parent's runs are
stored once, by the parent.

A child forked (``os.fork()`` or a ``multiprocessing`` "fork" context) while the parent's
SQLite writer held the write lock used to inherit SQLite's in-process record of that lock:
every connection it opened waited in ``BEGIN IMMEDIATE`` until it gave up, its runs were
lost and its exit took the whole shutdown deadline. Here a thread of the parent produces
runs flat out while the main thread forks, each time while the writer is inside a
transaction (a listener holds each of the parent's inserts for a moment, so the fork
lands inside one whatever the machine's speed). Every child is waited for with a
timeout, so a hang fails rather than blocks.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from gecko_otel import MonitorConfig
from gecko_otel._guard import internal_error_count
from gecko_otel._monitor import Monitor
from support.forks import wait_child
from support.store_procs import build_monitor, one_run, sql_rows

FORKS = 4
CHILD_RUNS = 50
#: Seconds a child may take: a hung child is killed and the test fails.
CHILD_TIMEOUT = 30.0
PARENT = "fork-parent"


class BusyParent:
    """A Monitor whose writer is kept busy by a producing thread, and a way to fork
    while that writer is inside a write transaction."""

    def __init__(self, url: str) -> None:
        config = MonitorConfig(store_batch_size=20, min_runs_for_rate=10**9)
        self.url = url
        self.monitor = build_monitor(url, "forking", config=config)
        self.produced = 0
        self.in_write = threading.Event()
        self._hold = threading.Event()
        self._stop = threading.Event()
        self._pid = os.getpid()
        engine = self.monitor._store.store.engine  # type: ignore[attr-defined]
        event.listen(engine, "before_cursor_execute", self._hold_inserts)
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    def _hold_inserts(self, *args: Any) -> None:
        statement: str = args[2]
        if (
            self._hold.is_set()
            and os.getpid() == self._pid
            and threading.current_thread().name == "gecko-otel-store"
            and statement.lstrip().upper().startswith("INSERT")
        ):
            self._hold.clear()
            self.in_write.set()
            self._stop.wait(0.05)  # the transaction stays open a moment

    def _produce(self) -> None:
        writer = self.monitor._store.writer  # type: ignore[attr-defined]
        while not self._stop.is_set():
            if writer.pending() > 200:  # flat out, but no faster than the writer
                self._stop.wait(0.001)
                continue
            one_run(self.monitor, PARENT)
            self.produced += 1

    def wait_for_a_write(self) -> None:
        """Return while the parent's writer is inside a write transaction."""
        self.in_write.clear()
        self._hold.set()
        assert self.in_write.wait(10), "the parent's writer never wrote"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.monitor.force_flush(30_000)


@pytest.fixture
def busy_parent(store_url: str) -> Iterator[BusyParent]:
    parent = BusyParent(store_url)
    try:
        yield parent
    finally:
        parent.stop()
        parent.monitor.shutdown()


def child_runs(monitor: Monitor, collector: str) -> None:
    """In a child: runs, everything stored, no loss, no internal error (else raises)."""
    errors_before = internal_error_count()
    for _ in range(CHILD_RUNS):
        one_run(monitor, collector)
    assert monitor.force_flush(20_000), "the child's runs were not stored"
    dropped = monitor.system_health().dropped
    assert not any(n for key, n in dropped.items() if key.startswith("store_")), dropped
    assert internal_error_count() == errors_before, "internal error in the child"


def assert_all_stored(parent: BusyParent, children: list[str]) -> None:
    parent.stop()
    stored = {
        name: (total, distinct)
        for name, total, distinct in sql_rows(
            parent.url,
            "SELECT collector_type, count(*), count(DISTINCT execution_id) "
            "FROM execution_history GROUP BY collector_type",
        )
    }
    assert stored == {
        PARENT: (parent.produced, parent.produced),
        **dict.fromkeys(children, (CHILD_RUNS, CHILD_RUNS)),
    }
    # A parent run written again by a child would be skipped by its unique id, but
    # counted twice in the collector's totals.
    totals = dict(
        sql_rows(parent.url, "SELECT collector_type, total_executions FROM collection_metadata")
    )
    assert totals[PARENT] == parent.produced


def test_children_forked_during_a_write_store_their_runs(
    busy_parent: BusyParent, tmp_path: Path
) -> None:
    children = []
    for k in range(FORKS):
        busy_parent.wait_for_a_write()
        error = tmp_path / f"child-{k}.error"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; never returns into pytest
            code = 1
            try:
                child_runs(busy_parent.monitor, f"child-{k}")
                busy_parent.monitor.shutdown()
                code = 0
            except BaseException:
                error.write_text(traceback.format_exc(), encoding="utf-8")
            finally:
                os._exit(code)
        code = wait_child(pid, CHILD_TIMEOUT)
        assert code == 0, error.read_text(encoding="utf-8") if error.exists() else code
        children.append(f"child-{k}")
    assert_all_stored(busy_parent, children)


_PARENT: list[Monitor] = []


def _multiprocessing_child(collector: str) -> None:  # pragma: no cover - in the child
    child_runs(_PARENT[0], collector)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_multiprocessing_children_forked_during_a_write_store_their_runs(
    busy_parent: BusyParent,
) -> None:
    context = multiprocessing.get_context("fork")
    _PARENT.append(busy_parent.monitor)
    children = []
    try:
        for k in range(FORKS):
            busy_parent.wait_for_a_write()
            child = context.Process(target=_multiprocessing_child, args=(f"mp-{k}",))
            child.start()
            child.join(CHILD_TIMEOUT)
            if child.is_alive():
                child.kill()
                child.join(5)
                raise AssertionError(f"child mp-{k} still running after {CHILD_TIMEOUT} s")
            assert child.exitcode == 0
            children.append(f"mp-{k}")
    finally:
        _PARENT.clear()
    assert_all_stored(busy_parent, children)


def _spawned_child(url: str, collector: str) -> None:  # pragma: no cover - in the child
    monitor = build_monitor(url, "spawned")
    try:
        child_runs(monitor, collector)
    finally:
        monitor.shutdown()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_spawned_children_store_their_runs_beside_a_busy_writer(
    busy_parent: BusyParent,
) -> None:
    busy_parent.wait_for_a_write()
    child = multiprocessing.get_context("spawn").Process(
        target=_spawned_child, args=(busy_parent.url, "spawned")
    )
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join(5)
        raise AssertionError("the spawned child is still running after 60 s")
    assert child.exitcode == 0
    assert_all_stored(busy_parent, ["spawned"])
