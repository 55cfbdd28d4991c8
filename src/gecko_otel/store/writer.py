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
down; each loss is counted by kind (`gecko_otel.store.losses`), once, logged,
and shown in ``Monitor.system_health().dropped`` and the
``gecko.monitor.dropped`` metric. A batch the thread is still writing when
``shutdown`` gives up on it is counted then, and never stored after that
(`gecko_otel.store.batches`).

``flush`` waits until everything put before it is written; ``shutdown``
flushes (bounded by a timeout) and stops the thread. After ``fork()`` the
child starts with an empty queue (the parent writes what it had, the child
never does) and fresh connections (`gecko_otel.store.forking`), and starts
its own thread when it first puts something.
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

from gecko_otel._guard import at_fork_in_child, guarded
from gecko_otel._worker import STOP, Worker
from gecko_otel.store.batches import Batch, write_batch
from gecko_otel.store.engine import is_transient
from gecko_otel.store.losses import ALERT, HEALTH, LOG_EVERY, METRIC, RUN, BatchAbandoned, Losses
from gecko_otel.store.tasks import PeriodicTasks

if TYPE_CHECKING:
    from gecko_otel._values.records import FinishedRun
    from gecko_otel.store.store import Store

logger = logging.getLogger("gecko_otel.store")

__all__ = ["ALERT", "HEALTH", "METRIC", "RUN", "StoreWriter"]

_FLUSH: Final = "flush"

#: Backoff between attempts while the database is unreachable.
BACKOFF_START: Final = 0.1
BACKOFF_MAX: Final = 30.0


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
        #: Items lost, by kind, and rows refused.
        self.losses = Losses(store.describe, queue_size)
        #: Items written, by kind.
        self.written: dict[str, int] = {RUN: 0, ALERT: 0, METRIC: 0, HEALTH: 0}
        #: Failed attempts to write a batch (each retried), and the last error.
        self.failures = 0
        self.last_error: str | None = None
        self.available = available
        #: The batch being written, and whether shutdown gave up on the thread.
        self._current: Batch | None = None
        self._abandoned = False
        #: Taking a batch from the queue, and counting what is left, one at a time.
        self._count_lock = threading.Lock()
        #: Called when the thread ends, if shutdown could not wait for it (closing the store).
        self._then: Callable[[], None] | None = None
        self._done = False
        self._creator_pid = os.getpid()
        self.before_exit = before_exit
        #: flush() calls waiting: partial batches are written at once until they are done.
        self._flushes = 0
        self._flush_lock = threading.Lock()
        self._tasks = PeriodicTasks()
        self._last_log = -LOG_EVERY
        at_fork_in_child(self, "_after_fork")
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- any thread ---------------------------------------------------------------

    def put(self, kind: str, item: Any) -> None:
        """Queue one item for writing. O(1), never blocks, never raises."""
        queue = self._queue
        if len(queue) >= self._max or self._closed:
            self.losses.drop(kind, 1, time.monotonic())
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
        batch = self._current
        return len(self._queue) + (len(batch.items) if batch is not None else 0)

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

    def shutdown(self, timeout: float = 10.0, then: Callable[[], None] | None = None) -> bool:
        """Flush for at most ``timeout`` seconds, then stop; what is left is counted as lost.

        A thread stuck in a write at the deadline is left behind, and its batch
        counted as lost now (`gecko_otel.store.batches`); ``then`` (closing the
        store) is called when the thread is done with its connection.
        """
        if self._closed:
            with self._count_lock:  # a thread left behind by an earlier shutdown closes it
                if self._abandoned and not self._done:
                    self._then, then = then, None
            if then is not None:
                then()
            return True
        deadline = time.monotonic() + timeout
        dropped_before = self.losses.data_dropped()
        flushed = self.flush(timeout)
        self._closed = True
        ended = self._worker.stop(deadline - time.monotonic())
        committing = 0
        with self._count_lock:
            batch = self._current
            if not ended:
                self._abandoned = True
                if batch is not None:
                    left = batch.abandon()
                    if left is None:  # its commit decides: stored, or counted when it fails
                        committing = len(batch.items)
                    else:
                        self._count(left)
            self._count_left()
            if not (ended or self._done):
                self._then, then = then, None
        if then is not None:
            then()
        self.losses.report(time.monotonic())
        lost = self.losses.data_dropped() - dropped_before
        if lost or committing:
            logger.error(
                "gecko_otel: store %s unreachable at shutdown; %d items not written (%s)%s",
                self.store.describe(),
                lost,
                self.last_error,
                f"; {committing} more were being committed" if committing else "",
            )
        return flushed and not lost and not committing

    @property
    def dropped(self) -> dict[str, int]:
        """Items lost, by kind."""
        return self.losses.dropped

    @property
    def rejected(self) -> int:
        """Rows the database refused."""
        return self.losses.rejected

    def counts(self) -> dict[str, int]:
        """Losses, for ``system_health().dropped`` and the ``gecko.monitor.dropped`` metric."""
        return self.losses.counts()

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

    def maintain(
        self, name: str, interval: float, task: Callable[[], None], *, at_stop: bool = False
    ) -> None:
        """Run ``task`` on the writer thread every ``interval`` seconds (retention, alert sync),
        and with ``at_stop`` once more when it stops, after the last batch.

        ``name`` is what a log line calls it when the database is unavailable.
        """
        self._tasks.add(name, interval, task, at_stop=at_stop)
        if not self._started:
            self._start()

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
        # The batch the parent was writing is the parent's (its thread is not here).
        self._current, self._abandoned, self._then, self._done = None, False, None, False
        # The child's own figures: the parent's stay the parent's.
        self.losses.reset()
        self.written = dict.fromkeys(self.written, 0)
        self.failures = 0
        self.available, self.last_error = True, None
        self.store.after_fork()

    def _count(self, items: list[tuple[str, Any]], *, log: bool = False) -> None:
        """Count items as lost (``log``: here; else shutdown's log line reports them)."""
        now = time.monotonic()
        for kind, _ in items:
            self.losses.drop(kind, 1, now, log=log)

    def _count_left(self, *, log: bool = False) -> None:
        """Count what is queued as lost, and release its flush markers (holding ``_count_lock``)."""
        while self._queue:
            kind, item = self._queue.popleft()
            if kind == _FLUSH:
                self._flushed([item], stored=False)
            else:
                self._count([(kind, item)], log=log)

    def _take(self) -> tuple[list[tuple[str, Any]], list[_Flush]]:
        """Up to one batch of items, and the flush markers met before the next item.

        Behind by two batches or more, the writer takes up to ``CATCH_UP``
        batches at once: what a transaction costs beyond its rows (statements,
        the collectors' upserts, the commit) is then paid once for all of them.
        On SQLite it is also the GIL: each statement releases it, and getting it
        back from a busy collector thread can take a switch interval (5 ms).
        """
        items: list[tuple[str, Any]] = []
        markers: list[_Flush] = []
        queue = self._queue
        limit = self._batch * (CATCH_UP if len(queue) >= 2 * self._batch else 1)
        while len(items) < limit:
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

    def _loop(self) -> bool:
        """One pass: write one batch (retrying while the database is down). False to stop."""
        with self._count_lock:
            if self._abandoned:  # shutdown gave up on this thread and counted the rest
                self._count_left(log=True)
                return False
            items, markers = self._take()
            batch = self._current = Batch(items)
        try:
            return self._write_batch(batch, markers)
        finally:
            self._current = None

    def _write_batch(self, batch: Batch, markers: list[_Flush]) -> bool:
        backoff = BACKOFF_START
        while batch.items:
            try:
                write_batch(self.store, batch, self.written, self.losses)
            except BatchAbandoned:
                break  # shutdown counted it
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_transient(exc):
                    refused = batch.take()
                    if refused:
                        self.losses.reject(refused[0][0], len(refused), exc)
                    break
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                if self.available or time.monotonic() - self._last_log >= LOG_EVERY:
                    self._last_log = time.monotonic()
                    logger.warning(
                        "gecko_otel: store %s unavailable (%s); retrying, %d items waiting",
                        self.store.describe(),
                        self.last_error,
                        len(self._queue) + len(batch.items),
                    )
                self.available = False
                if self._worker.sleep(backoff):
                    # Shutting down: the batch goes back, to be counted as lost by
                    # shutdown(), or here if shutdown() stopped waiting for this thread.
                    with self._count_lock:
                        self._queue.extendleft(reversed(batch.take()))
                        if self._abandoned:
                            self._count_left(log=True)
                    self._flushed(markers, stored=False)
                    return False
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if not self.available:
                logger.warning("gecko_otel: store %s available again", self.store.describe())
                self.available = True
                self.losses.report(time.monotonic())
            break
        self._flushed(markers, stored=not batch.abandoned)
        return not batch.abandoned

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
                return self._stopped()
        if worker.stopping:
            if not self._queue:  # all written: the last word of the tasks that want one
                with guarded("StoreWriter final tasks"):
                    self._tasks.run_at_stop()
            return self._stopped()
        self._tasks.run_due()
        return None

    def _stopped(self) -> bool:
        """The thread ends: if shutdown left it behind, close what it was using now."""
        with self._count_lock:
            self._done = True
            then, self._then = self._then, None
        if then is not None:
            with guarded("StoreWriter close"):
                then()
        return STOP

    def _flushed(self, markers: list[_Flush], *, stored: bool = True) -> None:
        if markers:
            with self._flush_lock:
                self._flushes -= len(markers)
            for marker in markers:
                marker.stored = stored
                marker.set()


#: Batches one transaction takes at most when the writer has fallen behind.
CATCH_UP: Final = 8


#: Seconds the interpreter's exit waits for a writer that still has items.
EXIT_TIMEOUT: Final = 10.0


def _flush_at_exit(ref: weakref.ref[StoreWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.flush_at_exit()
