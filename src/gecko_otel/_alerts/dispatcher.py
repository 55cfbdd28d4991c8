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

import asyncio
import functools
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final

from gecko_otel._guard import at_fork_in_child, finish_within, guarded
from gecko_otel._values.alerts import Alert
from gecko_otel._worker import AGAIN, STOP, Worker
from gecko_otel.typing import AlertHandler

logger = logging.getLogger("gecko_otel.dispatch")

_POLL: Final = 0.25
#: Hung handler calls a lane leaves behind on their threads before it stops
#: starting new ones (then its notifications queue, bounded, until one returns).
MAX_HUNG_CALLS: Final = 3

#: The lane whose handler this thread is calling (None outside a handler call).
_calling = threading.local()


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
        self.closed = False
        #: Abandoned calls still hanging on their threads (at most MAX_HUNG_CALLS),
        #: and whether the lane is without a worker until one of them returns.
        self.hung = 0
        self.orphaned = False
        self.worker = Worker(self, "deliver", name=f"gecko-otel-alert-handler[{self.name}]")

    def deliver(self, timed_out: bool) -> bool | None:
        """The worker's step: call the handler with the next notification, if any."""
        if self.closed:
            return STOP
        try:
            alert = self.queue.get_nowait()
        except queue.Empty:
            return None  # asleep until the next submit wakes the worker
        generation = self.worker.generation
        self.busy_since = time.monotonic()
        _calling.lane = self  # a flush() from inside the handler does not wait on this call
        try:
            result = self.handler(alert)
            if inspect.isawaitable(result):  # an async def handler: run it here, on our thread
                asyncio.run(_completed(result))
        except Exception as exc:
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
            _calling.lane = None
        if not self.dispatcher.finish_call(self, generation):
            self.dispatcher.hung_call_returned(self)
            return STOP  # this call was abandoned: the lane has moved on without us
        return AGAIN


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
        self._supervisor = Worker(
            self, "_supervise", name="gecko-otel-alert-supervisor", interval=min(_POLL, timeout / 4)
        )
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

    @guarded("AlertDispatcher.submit")  # never raise into the engine
    def submit(self, alert: Alert) -> None:
        """Queue ``alert`` for every handler. Never blocks, never raises."""
        if self._closed:
            self.count("dropped_notifications")
            return
        self._supervisor.ensure_running()
        for lane in self._lanes:
            lane.worker.ensure_running()
            with self._cond:
                lane.pending += 1
            try:
                lane.queue.put_nowait(alert)
                lane.worker.wake()
            except queue.Full:
                with self._cond:
                    lane.pending -= 1
                    lane.unlogged_drops += 1
                    self._counts["dropped_notifications"] += 1
                    self._cond.notify_all()
                # Logged by the supervisor: never log on a collector's thread.

    def hung_call_returned(self, lane: _Lane) -> None:
        """An abandoned call returned at last: one fewer hung thread; if the lane was
        left without a worker (too many hung), it gets one again."""
        with self._cond:
            lane.hung -= 1
            orphaned, lane.orphaned = lane.orphaned, False
        if orphaned and not lane.closed:
            lane.worker.restart()  # this thread is ending: a fresh one takes the queue

    def finish_call(self, lane: _Lane, generation: int) -> bool:
        """A worker finished a call; False if the lane had abandoned it meanwhile."""
        with self._cond:
            if generation != lane.worker.generation:
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
        own = getattr(_calling, "lane", None)  # a handler flushing: not its own call
        with self._cond:
            while any(lane.pending - (lane is own) > 0 for lane in self._lanes):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(_POLL if remaining is None else min(_POLL, remaining))
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, stop, and close closable handlers: all within ``timeout``
        (a handler's ``close()`` that hangs is left behind)."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        with self._cond:
            self._closed = True
            lanes, self._lanes = self._lanes, []
            self._cond.notify_all()
        self._supervisor.stop(min(1.0, max(0.0, deadline - time.monotonic())))
        for lane in lanes:
            lane.closed = True
            lane.worker.stop(0.0)
            with self._cond:
                # What flush() could not deliver in time is lost: count it.
                self._counts["dropped_notifications"] += lane.queue.qsize()
            close: Callable[[], object] | None = getattr(lane.handler, "close", None)
            if callable(close):
                left = max(0.0, deadline - time.monotonic())
                if not finish_within(functools.partial(_close, lane.name, close), left):
                    logger.warning(
                        "gecko_otel: closing alert handler %s did not finish by the shutdown "
                        "deadline; left behind",
                        lane.name,
                    )

    # -- supervision -----------------------------------------------------------------

    def _supervise(self, timed_out: bool) -> bool | None:
        """The supervisor's step: log drops, abandon calls that hang past the timeout."""
        if self._closed:
            return STOP
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
                lane.busy_since = None
                lane.hung += 1
                if lane.hung < MAX_HUNG_CALLS:
                    lane.worker.restart()  # the hung thread ends when (if) it returns
                else:  # no thread more: the lane waits (bounded queue) for one to return
                    lane.worker.abandon()
                    lane.orphaned = True
                self._cond.notify_all()
            logger.warning(
                "gecko_otel: alert handler %s took more than %.1f s; abandoned that "
                "call and moved on",
                lane.name,
                self._timeout,
            )
        return None

    def _after_fork(self) -> None:
        # Only the forking thread survives: fresh locks and queues; the
        # workers reset themselves and restart on the next submit.
        self._cond = threading.Condition()
        for lane in self._lanes:
            lane.queue = queue.Queue(maxsize=self._queue_size)
            lane.pending = 0
            lane.busy_since = None


async def _completed(awaitable: Awaitable[object]) -> object:
    return await awaitable


def _close(name: str, close: Callable[[], object]) -> None:
    try:
        close()
    except Exception as exc:  # noqa: BLE001 - a handler's failure to close is its own
        logger.warning("gecko_otel: closing alert handler %s failed: %s", name, exc)
