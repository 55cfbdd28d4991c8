"""Periodic tasks on the store's writer thread: retention and the alert sync.

Each runs every ``interval`` seconds when it is due; a database that is
unavailable skips it (logged once a minute), any other error is an internal
error, and neither stops the writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from gecko_otel._guard import report_internal_error
from gecko_otel.store.engine import is_transient

logger = logging.getLogger("gecko_otel.store")

#: Seconds between log lines about a task skipped while the store is unavailable.
LOG_EVERY: Final = 60.0


class PeriodicTasks:
    """Named tasks, each with its interval and next due time (monotonic).

    Threading: `add` from any thread; `run_due` from the writer thread only.
    """

    def __init__(self) -> None:
        self._tasks: list[tuple[str, float, Callable[[], None], list[float]]] = []
        self._at_stop: list[str] = []
        self._last_log = -LOG_EVERY

    def add(
        self, name: str, interval: float, task: Callable[[], None], *, at_stop: bool = False
    ) -> None:
        """Run ``task`` every ``interval`` seconds; ``name`` is what log lines call it.

        ``at_stop``: once more when the writer stops (after the last batch).
        """
        self._tasks.append((name, interval, task, [time.monotonic() + interval]))
        if at_stop:
            self._at_stop.append(name)

    def run_at_stop(self) -> None:
        """Run the tasks added with ``at_stop``, now."""
        for name, _interval, _task, due in self._tasks:
            if name in self._at_stop:
                due[0] = 0.0
            else:
                due[0] = float("inf")
        self.run_due()

    def run_due(self) -> None:
        """Run the tasks that are due."""
        for name, interval, task, due in self._tasks:
            now = time.monotonic()
            if now < due[0]:
                continue
            due[0] = now + interval
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - a task must not stop the writer
                if not is_transient(exc):
                    report_internal_error(f"StoreWriter {name}", exc)
                elif now - self._last_log >= LOG_EVERY:  # the outage is logged once a minute
                    self._last_log = now
                    logger.warning(
                        "gecko_otel: %s skipped, store unavailable (%s); retried every %.0f s",
                        name,
                        str(exc).splitlines()[0][:200],
                        interval,
                    )
