"""The background writer: the only thread that writes to the store.

Finished runs, alert snapshots and metric points are handed to `put`
(O(1): an append to a bounded deque, no lock, no I/O) and a daemon thread
writes them in batches, one transaction per batch, under OpenTelemetry's
suppress-instrumentation flag so a SQLAlchemy or psycopg instrumentation
does not trace our own writes. It wakes every ``store_flush_interval``, or
early when a batch fills.

When the database is unreachable the batch is kept and retried with
exponential backoff (0.1 s doubling to 30 s) while new items wait in the
queue. Items are lost only when the queue is full (``store_queue_size``),
when a row is refused by the database (counted as rejected: the rest of its
batch is still written), or when the process stops while the database is
down; each loss is counted by kind, logged, and shown in
``Monitor.system_health().dropped`` and the ``gecko.monitor.dropped`` metric.

``flush`` waits until everything put before it is written; ``shutdown``
flushes (bounded by a timeout) and stops the thread. After ``fork()`` the
child starts with an empty queue (the parent writes what it had) and fresh
connections, and starts its own thread when it first puts something.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy.exc import (
    DBAPIError,
    StatementError,
)

from gecko_otel._guard import at_fork_in_child, guarded, report_internal_error
from gecko_otel._worker import STOP, Worker
from gecko_otel.store.engine import is_transient

if TYPE_CHECKING:
    from gecko_otel._values.records import FinishedRun
    from gecko_otel.store.store import Store

logger = logging.getLogger("gecko_otel.store")

RUN: Final = "runs"
ALERT: Final = "alerts"
METRIC: Final = "metrics"
HEALTH: Final = "health"
_FLUSH: Final = "flush"

#: Backoff between attempts while the database is unreachable.
BACKOFF_START: Final = 0.1
BACKOFF_MAX: Final = 30.0
#: Seconds between log lines about losses and outages (the counters count all).
LOG_EVERY: Final = 60.0


class _Flush(threading.Event):
    """A flush marker: set when what was queued before it is written, or given up."""

    def __init__(self) -> None:
        super().__init__()
        #: False when the items before it were counted as lost instead.
        self.stored = True


class StoreWriter:
    """Writes runs, alerts and metric points to a `Store` in the background.

    Args:
        store: Where to write.
        queue_size: Items waiting at most; beyond it new items are dropped
            and counted.
        batch_size: Items per transaction; a full batch wakes the thread.
        interval: Seconds between writes when batches do not fill.
        available: Whether the database answered at start; until a write
            succeeds, ``available`` is False and queries answer from memory.
        before_exit: Called at interpreter exit before the last flush (the
            Monitor collects its last metric points into the queue).
    """

    def __init__(
        self,
        store: Store,
        *,
        queue_size: int,
        batch_size: int,
        interval: float,
        available: bool = True,
        before_exit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._max = queue_size
        self._batch = batch_size
        self._queue: deque[tuple[str, Any]] = deque()
        self._worker = Worker(self, "_step", name="gecko-otel-store", interval=interval)
        self._start_lock = threading.Lock()
        self._started = False  # cheaper to test on every put() than the worker
        self._pid = os.getpid()
        self._closed = False
        #: Items lost, by kind (runs, alerts, metrics), and rows refused.
        self.dropped: dict[str, int] = {RUN: 0, ALERT: 0, METRIC: 0, HEALTH: 0}
        self.rejected = 0
        #: Items written, by kind.
        self.written: dict[str, int] = {RUN: 0, ALERT: 0, METRIC: 0, HEALTH: 0}
        #: Failed attempts to write a batch (each retried), and the last error.
        self.failures = 0
        self.last_error: str | None = None
        self.available = available
        self._inflight = 0
        self._count_lock = threading.Lock()
        self._creator_pid = os.getpid()
        self.before_exit = before_exit
        #: flush() calls waiting: partial batches are written at once until they are done.
        self._flushes = 0
        self._flush_lock = threading.Lock()
        #: Periodic tasks: [name, interval, task, next due (monotonic)].
        self._tasks: list[list[Any]] = []
        self._last_log = -LOG_EVERY
        self._last_drop_log = -LOG_EVERY
        self._unlogged = 0
        at_fork_in_child(self, "_after_fork")
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- any thread ---------------------------------------------------------------

    def put(self, kind: str, item: Any) -> None:
        """Queue one item for writing. O(1), never blocks, never raises."""
        queue = self._queue
        if len(queue) >= self._max or self._closed:
            self._drop(kind, 1)
            return
        queue.append((kind, item))
        if len(queue) == self._batch:
            self._worker.wake()
        if not self._started:
            self._start()

    def put_run(self, run: FinishedRun) -> None:
        """Queue a finished run."""
        self.put(RUN, run)

    def put_alert(self, row: dict[str, Any]) -> None:
        """Queue an alert's ``system_alerts`` row (the newest per alert id is written)."""
        self.put(ALERT, row)

    def put_health(self, health: Mapping[str, tuple[str, float | None]]) -> None:
        """Queue collectors' health status and score (the newest per collector is written)."""
        self.put(HEALTH, dict(health))

    def flush_at_exit(self) -> None:
        """At interpreter (or multiprocessing child) exit: queue the owner's last items,
        then write what is queued, bounded by ``EXIT_TIMEOUT``."""
        if self._closed or self._pid != os.getpid():
            return
        if self.before_exit is not None:
            with guarded("StoreWriter exit flush"):  # the flush below matters more
                self.before_exit()
        self.shutdown(EXIT_TIMEOUT)

    def pending(self) -> int:
        """Items not yet written: queued, and in the batch being written or retried."""
        return len(self._queue) + self._inflight

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued before this call is written (or lost).

        Returns False when the timeout passed first, e.g. while the database
        is down; nothing is dropped by a timeout.
        """
        if self._closed or (not self._started and not self._queue):
            return not self._queue
        done = _Flush()
        with self._flush_lock:
            self._flushes += 1
        self._queue.append((_FLUSH, done))  # markers pass even when the queue is full
        if not self._started:
            self._start()
        self._worker.wake()
        return done.wait(timeout) and done.stored

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop; what is left is counted as lost."""
        if self._closed:
            return True
        dropped_before = self._data_dropped()
        flushed = self.flush(timeout)
        self._closed = True
        self._worker.stop(max(1.0, timeout))
        # A batch still being written when the wait ended is the thread's to
        # count: it may yet be stored (a lock released late), or come back.
        self._count_left()
        self._report_drops(time.monotonic())
        # Counted here, or by the writer thread as it gave up its batch.
        lost = self._data_dropped() - dropped_before
        if lost:
            logger.error(
                "gecko_otel: store %s unreachable at shutdown; %d items not written (%s)",
                self.store.describe(),
                lost,
                self.last_error,
            )
        return flushed and not lost

    def _data_dropped(self) -> int:
        # Health snapshots are counted apart: a later snapshot replaces a lost one.
        return sum(n for kind, n in self.dropped.items() if kind != HEALTH)

    def counts(self) -> dict[str, int]:
        """Losses, for ``system_health().dropped`` and the ``gecko.monitor.dropped`` metric."""
        return {
            "store_dropped_runs": self.dropped[RUN],
            "store_dropped_alerts": self.dropped[ALERT],
            "store_dropped_metrics": self.dropped[METRIC],
            "store_dropped_health": self.dropped[HEALTH],
            "store_rejected": self.rejected,
        }

    def status(self) -> dict[str, Any]:
        """Backlog, writes and the last failure, for ``Monitor.export()``."""
        return {
            "available": self.available,
            "pending": self.pending(),
            "written_runs": self.written[RUN],
            "written_alerts": self.written[ALERT],
            "written_metrics": self.written[METRIC],
            "write_failures": self.failures,
            "last_error": self.last_error,
        }

    def maintain(self, name: str, interval: float, task: Callable[[], None]) -> None:
        """Run ``task`` on the writer thread every ``interval`` seconds (retention, alert sync).

        ``name`` is what a log line calls it when the database is unavailable.
        """
        self._tasks.append([name, interval, task, time.monotonic() + interval])
        if not self._started:
            self._start()

    def _maintain(self) -> None:
        for entry in self._tasks:
            name, interval, task, due = entry
            now = time.monotonic()
            if now < due:
                continue
            entry[3] = now + interval
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - a task must not stop the writer
                if is_transient(exc):
                    if now - self._last_log >= LOG_EVERY:  # the outage is logged once a minute
                        self._last_log = now
                        logger.warning(
                            "gecko_otel: %s skipped, store unavailable (%s); retried every %.0f s",
                            name,
                            str(exc).splitlines()[0][:200],
                            interval,
                        )
                else:
                    report_internal_error(f"StoreWriter {name}", exc)

    # -- internals ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._started or self._closed:
                return
            if os.getpid() != self._creator_pid:
                # A multiprocessing child ends with os._exit(): no atexit. Its
                # finalizers run, and the registry is cleared as it starts, so
                # the flush is registered here, when the child first writes.
                multiprocessing.util.Finalize(
                    self, _flush_at_exit, args=(weakref.ref(self),), exitpriority=10
                )
            self._started = True
            self._worker.ensure_running()

    def _after_fork(self) -> None:
        # The parent writes what was queued; the child must not write it twice.
        self._flushes = 0
        self._flush_lock = threading.Lock()
        self._queue = deque()
        self._start_lock = threading.Lock()
        self._started = False
        self._pid = os.getpid()
        self._count_lock = threading.Lock()
        # The child's own figures: the parent's stay the parent's.
        self.dropped = dict.fromkeys(self.dropped, 0)
        self.written = dict.fromkeys(self.written, 0)
        self.rejected = self.failures = self._inflight = self._unlogged = 0
        self.available, self.last_error = True, None
        self.store.after_fork()

    def _drop(self, kind: str, n: int) -> None:
        self.dropped[kind] = self.dropped.get(kind, 0) + n
        self._unlogged += n
        now = time.monotonic()
        if now - self._last_drop_log >= LOG_EVERY:
            self._report_drops(now)

    def _report_drops(self, now: float) -> None:
        """Log the drops not yet reported (the first at once, then once a minute)."""
        if not self._unlogged:
            return
        self._last_drop_log = now
        logger.error(
            "gecko_otel: store queue full (%d items) or closed; dropped %d items "
            "since the last report (totals: %s). The database %s is unreachable or slower "
            "than the runs: raise MonitorConfig.store_queue_size or fix the database.",
            self._max,
            self._unlogged,
            self.dropped,
            self.store.describe(),
        )
        self._unlogged = 0

    def _count_left(self) -> int:
        lost = 0
        while self._queue:
            kind, item = self._queue.popleft()
            if kind == _FLUSH:
                self._flushed([item], stored=False)
            else:
                self.dropped[kind] = self.dropped.get(kind, 0) + 1
                lost += 1
        return lost

    def _reject(self, kind: str, n: int, exc: BaseException) -> None:
        self.rejected += n
        if not isinstance(exc, StatementError):
            report_internal_error("StoreWriter", exc)  # our bug, not the data's
            return
        logger.error(
            "gecko_otel: the store refused %d %s row(s) (%s: %s); not stored",
            n,
            kind,
            type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__,
            str(exc).splitlines()[0][:300],
        )

    def _take(self) -> tuple[list[tuple[str, Any]], list[_Flush]]:
        """Up to one batch of items, and the flush markers met before the next item."""
        items: list[tuple[str, Any]] = []
        markers: list[_Flush] = []
        queue = self._queue
        while len(items) < self._batch:
            try:
                kind, item = queue.popleft()
            except IndexError:
                break
            if kind == _FLUSH:
                markers.append(item)
                # Everything before the marker is in this batch.
                break
            items.append((kind, item))
        return items, markers

    def _write(self, items: list[tuple[str, Any]]) -> None:
        runs = [item for kind, item in items if kind == RUN]
        alerts = [item for kind, item in items if kind == ALERT]
        metrics = [item for kind, item in items if kind == METRIC]
        health: dict[str, tuple[str, float | None]] = {}
        for kind, item in items:
            if kind == HEALTH:
                health.update(item)
        try:
            self.store.write(runs, alerts, metrics, health)
        except Exception as exc:
            if is_transient(exc) or len(items) == 1:
                raise
            # One bad row must not cost the batch: write them one by one,
            # consuming the list, so a retry after a transient error repeats
            # none of the rows already written or refused.
            while items:
                try:
                    self._write([items[0]])
                except Exception as single:
                    if is_transient(single):
                        raise
                    self._reject(items[0][0], 1, single)
                del items[0]
            return
        snapshots = len(items) - len(runs) - len(alerts) - len(metrics)
        for kind, n in (
            (RUN, len(runs)),
            (ALERT, len(alerts)),
            (METRIC, len(metrics)),
            (HEALTH, snapshots),
        ):
            self.written[kind] += n

    def _loop(self) -> bool:
        """One pass: write one batch (retrying while the database is down). False to stop."""
        items, markers = self._take()
        self._inflight = len(items)
        backoff = BACKOFF_START
        while items:
            try:
                self._write(items)
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_transient(exc):
                    self._reject(items[0][0], len(items), exc)
                    break
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                if self.available or time.monotonic() - self._last_log >= LOG_EVERY:
                    self._last_log = time.monotonic()
                    logger.warning(
                        "gecko_otel: store %s unavailable (%s); retrying, %d items waiting",
                        self.store.describe(),
                        self.last_error,
                        len(self._queue) + len(items),
                    )
                self.available = False
                if self._worker.sleep(backoff):
                    # Shutting down: the batch goes back, to be counted as lost
                    # (here if shutdown() stopped waiting for this thread).
                    self._queue.extendleft(reversed(items))
                    self._inflight = 0
                    self._flushed(markers, stored=False)
                    if self._closed:
                        self._count_left()
                    return False
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if not self.available:
                logger.warning("gecko_otel: store %s available again", self.store.describe())
                self.available = True
                self._report_drops(time.monotonic())
            break
        self._inflight = 0
        self._flushed(markers)
        return True

    def _step(self, timed_out: bool) -> bool | None:
        """One pass of the writer thread: write batches as they fill, and what waits
        every interval, then run the periodic tasks.

        A partial batch is written only when an interval passed without a batch
        filling (``timed_out``), or when a flush or shutdown waits for it: a writer
        that keeps up must not fall into writing runs a few at a time, since most of
        what a batch costs (transaction, collector upserts) is per batch.
        """
        partial, worker = timed_out, self._worker
        while self._queue and (
            partial or self._flushes or worker.stopping or len(self._queue) >= self._batch
        ):
            partial = False
            go_on = True
            with guarded("StoreWriter"):  # the writer thread must survive
                go_on = self._loop()
            if not go_on:
                return STOP
        if worker.stopping:
            return STOP
        self._maintain()
        return None

    def _flushed(self, markers: list[_Flush], *, stored: bool = True) -> None:
        if markers:
            with self._flush_lock:
                self._flushes -= len(markers)
            for marker in markers:
                marker.stored = stored
                marker.set()


#: Seconds the interpreter's exit waits for a writer that still has items.
EXIT_TIMEOUT: Final = 10.0


def _flush_at_exit(ref: weakref.ref[StoreWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.flush_at_exit()
