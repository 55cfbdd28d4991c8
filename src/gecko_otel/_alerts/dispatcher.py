"""Delivering alert notifications to handlers, off the collectors' threads.

Each handler gets a *lane*: a bounded queue and a worker thread that calls
the handler with one notification at a time, in order. A handler that raises
is logged and counted and its lane moves on; a handler still busy after
``timeout`` seconds is abandoned on its thread (counted), and a fresh worker
serves its lane from the next notification on, so one hanging webhook never
holds up the others or the collectors. A full lane drops the notification and
counts it. Nothing here ever blocks the caller of `AlertDispatcher.submit`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Final

from gecko_otel._alerts.values import Alert
from gecko_otel._guard import at_fork_in_child, report_internal_error
from gecko_otel.typing import AlertHandler

logger = logging.getLogger("gecko_otel.dispatch")

_POLL: Final = 0.25


def handler_name(handler: object) -> str:
    """A readable name for logs: the function's or the class's qualified name."""
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return str(name)


class _Lane:
    """One handler's queue and worker."""

    def __init__(self, handler: AlertHandler, size: int, dispatcher: AlertDispatcher) -> None:
        self.handler = handler
        self.name = handler_name(handler)
        self.queue: queue.Queue[Alert] = queue.Queue(maxsize=size)
        self.dispatcher = dispatcher
        self.pending = 0  # queued + in progress, guarded by dispatcher._cond
        self.unlogged_drops = 0  # drops the supervisor has not logged yet
        self.busy_since: float | None = None
        self.generation = 0
        self.closed = False
        self.worker: threading.Thread | None = None

    def ensure_worker(self) -> None:
        # Started lazily, and again after fork() (threads do not survive it)
        # or after a worker was abandoned.
        if self.worker is None or not self.worker.is_alive():
            self.start_worker()

    def start_worker(self) -> None:
        self.generation += 1
        self.busy_since = None
        worker = threading.Thread(
            target=self.run,
            args=(self.generation,),
            name=f"gecko-otel-alert-handler[{self.name}]",
            daemon=True,
        )
        self.worker = worker
        worker.start()

    def run(self, generation: int) -> None:
        while not self.closed and generation == self.generation:
            try:
                alert = self.queue.get(timeout=_POLL)
            except queue.Empty:
                continue
            self.busy_since = time.monotonic()
            try:
                self.handler(alert)
            except Exception as exc:  # a handler's failure is counted, not fatal
                self.dispatcher.count("handler_errors")
                logger.warning(
                    "gecko_otel: alert handler %s failed on alert %s (%s/%s): %s",
                    self.name,
                    alert.id,
                    alert.collector_type,
                    alert.rule,
                    exc,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
            finally:
                abandoned = not self.dispatcher.finish_call(self, generation)
            if abandoned:
                return  # a fresh worker took over this lane while we hung


class AlertDispatcher:
    """Fans notifications out to handler lanes.

    Args:
        timeout: Seconds a handler call may take before it is abandoned.
        queue_size: Notifications each lane holds at most.

    Threading: ``submit`` is non-blocking and safe from any thread, including
    while the alert engine holds its lock.
    """

    def __init__(self, *, timeout: float, queue_size: int) -> None:
        self._timeout = timeout
        self._queue_size = queue_size
        self._lanes: list[_Lane] = []
        self._cond = threading.Condition()
        self._counts = {"dropped_notifications": 0, "handler_errors": 0, "handler_timeouts": 0}
        self._closed = False
        self._supervisor: threading.Thread | None = None
        at_fork_in_child(self, "_after_fork")

    # -- handlers ----------------------------------------------------------------

    def add(self, handler: AlertHandler) -> None:
        """Deliver future notifications to ``handler`` too (no-op if already added)."""
        with self._cond:
            if any(lane.handler is handler for lane in self._lanes):
                return
            self._lanes = [*self._lanes, _Lane(handler, self._queue_size, self)]

    def remove(self, handler: AlertHandler) -> bool:
        """Stop delivering to ``handler``; False if it was not added."""
        with self._cond:
            lanes = [lane for lane in self._lanes if lane.handler is not handler]
            if len(lanes) == len(self._lanes):
                return False
            for lane in self._lanes:
                if lane.handler is handler:
                    lane.closed = True
                    self._counts["dropped_notifications"] += lane.queue.qsize()
            self._lanes = lanes
            self._cond.notify_all()
            return True

    # -- delivery -------------------------------------------------------------------

    def submit(self, alert: Alert) -> None:
        """Queue ``alert`` for every handler. Never blocks, never raises."""
        try:
            if self._closed:
                self.count("dropped_notifications")
                return
            self._ensure_supervisor()
            for lane in self._lanes:
                lane.ensure_worker()
                with self._cond:
                    lane.pending += 1
                try:
                    lane.queue.put_nowait(alert)
                except queue.Full:
                    with self._cond:
                        lane.pending -= 1
                        lane.unlogged_drops += 1
                        self._counts["dropped_notifications"] += 1
                        self._cond.notify_all()
                    # Logged by the supervisor: never log on a collector's thread.
        except Exception as exc:  # noqa: BLE001 - never raise into the engine
            report_internal_error("AlertDispatcher.submit", exc)

    def finish_call(self, lane: _Lane, generation: int) -> bool:
        """A worker finished a call; False if the lane had abandoned it meanwhile."""
        with self._cond:
            if generation != lane.generation:
                return False
            lane.busy_since = None
            lane.pending -= 1
            self._cond.notify_all()
            return True

    def count(self, what: str) -> None:
        with self._cond:
            self._counts[what] += 1

    def counts(self) -> dict[str, int]:
        """Dropped notifications, handler errors and timeouts so far."""
        with self._cond:
            return dict(self._counts)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification was handled (or abandoned)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while any(lane.pending > 0 for lane in self._lanes):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(_POLL if remaining is None else min(_POLL, remaining))
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout``), stop, and close closable handlers."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            lanes, self._lanes = self._lanes, []
            self._cond.notify_all()
        for lane in lanes:
            lane.closed = True
            with self._cond:
                # What flush() could not deliver in time is lost: count it.
                self._counts["dropped_notifications"] += lane.queue.qsize()
            close: Callable[[], object] | None = getattr(lane.handler, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - keep closing the others
                    logger.warning(
                        "gecko_otel: closing alert handler %s failed: %s", lane.name, exc
                    )

    # -- supervision -----------------------------------------------------------------

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None or not self._supervisor.is_alive():
            self._supervisor = threading.Thread(
                target=self._supervise, name="gecko-otel-alert-supervisor", daemon=True
            )
            self._supervisor.start()

    def _supervise(self) -> None:
        interval = min(_POLL, self._timeout / 4)
        while not self._closed:
            time.sleep(interval)
            now = time.monotonic()
            for lane in self._lanes:
                with self._cond:
                    drops, lane.unlogged_drops = lane.unlogged_drops, 0
                if drops:
                    logger.warning(
                        "gecko_otel: alert handler %s is %d notifications behind; "
                        "dropped %d notification(s)",
                        lane.name,
                        self._queue_size,
                        drops,
                    )
                with self._cond:
                    started = lane.busy_since
                    if started is None or now - started <= self._timeout or lane.closed:
                        continue
                    self._counts["handler_timeouts"] += 1
                    lane.pending -= 1
                    lane.start_worker()  # the hung thread exits when (if) it returns
                    self._cond.notify_all()
                logger.warning(
                    "gecko_otel: alert handler %s took more than %.1f s; abandoned that "
                    "call and moved on",
                    lane.name,
                    self._timeout,
                )

    def _after_fork(self) -> None:
        # Only the forking thread survives: fresh locks and queues, workers
        # and supervisor restart on the next submit.
        self._cond = threading.Condition()
        self._supervisor = None
        for lane in self._lanes:
            lane.queue = queue.Queue(maxsize=self._queue_size)
            lane.pending = 0
            lane.busy_since = None
            lane.worker = None
