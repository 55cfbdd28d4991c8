"""Handing the alert engine's decisions on, in order, outside every lock.

The engine decides under its lock (and the run pipeline's, when a run
prompted it) and only *queues* what it decided here: each notification for
the handlers and each alert change for the store. `Outbox.send` then hands
them on once the caller has released those locks, so no thread holds a lock
that collectors wait for while the dispatcher wakes handler lanes or the
store builds rows, whoever made the change: a collector's run, the watchdog,
or a handler acknowledging or resolving an alert.

Order: items are queued in the order the engine decided them (under its
lock) and one thread at a time sends them, oldest first. A thread that finds
another one sending leaves its items to it instead of waiting (the sender
looks at the queue again after it stops), so `send` never blocks unless asked
to (``wait=True``, for a flush that must see everything handed on).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from gecko_otel._guard import at_fork_in_child
from gecko_otel._values.alerts import Alert
from gecko_otel._values.health import AlertLevel


class Outbox:
    """What the engine decided, waiting to be handed on.

    Args:
        notify: Called with each notification snapshot (the dispatcher's
            non-blocking submit).
        on_change: Called with each alert snapshot created or changed, and
            the level handlers last heard (the store); must not block.
    """

    def __init__(
        self,
        notify: Callable[[Alert], None],
        on_change: Callable[[Alert, AlertLevel], None] | None,
    ) -> None:
        self._notify = notify
        self._on_change = on_change
        #: (snapshot, level handlers last heard, whether handlers hear of it)
        self._items: deque[tuple[Alert, AlertLevel, bool]] = deque()
        self._sending = threading.Lock()
        at_fork_in_child(self, "_after_fork")

    def _after_fork(self) -> None:
        # The parent hands on what it queued; a sender's lock held at fork()
        # would stay held in the child for ever.
        self._items = deque()
        self._sending = threading.Lock()

    def put(self, snapshot: Alert, notified_level: AlertLevel, *, notify: bool) -> None:
        """Queue one decision (under the engine's lock). O(1)."""
        self._items.append((snapshot, notified_level, notify))

    def send(self, *, wait: bool = False) -> None:
        """Hand on everything queued, oldest first; call with no engine or pipeline lock held.

        Args:
            wait: Wait for a thread sending now, so everything queued before
                this call has been handed on when it returns (flush).
        """
        items = self._items
        while items:
            if not self._sending.acquire(blocking=wait):
                return  # the sender looks again after it stops: ours go out in order
            try:
                while items:
                    snapshot, level, notify = items.popleft()
                    if notify:
                        self._notify(snapshot)
                    if self._on_change is not None:
                        self._on_change(snapshot, level)
            finally:
                self._sending.release()
