"""What the store writer loses, counted once each.

`Losses` counts items lost by kind and rows the database refused, and logs
them (the first at once, then once a minute); its figures are
``system_health().dropped`` and the ``gecko.monitor.dropped`` metric. Who
counts the batch in flight when shutdown gives up on the writer is decided
in `gecko_otel.store.batches`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from sqlalchemy.exc import DBAPIError, StatementError

from gecko_otel._guard import report_internal_error

logger = logging.getLogger("gecko_otel.store")

RUN: Final = "runs"
ALERT: Final = "alerts"
METRIC: Final = "metrics"
HEALTH: Final = "health"

#: Seconds between log lines about losses (the counters count all).
LOG_EVERY: Final = 60.0


class BatchAbandoned(Exception):
    """Raised inside a write transaction whose batch shutdown counted as lost: roll back."""


class Losses:
    """Items lost, by kind, and rows refused; logged as they happen, at most once a minute.

    Args:
        describe: The store's URL for log lines (password masked).
        queue_size: The writer's queue size, for the log line.

    Threading: safe from any thread.
    """

    def __init__(self, describe: Callable[[], str], queue_size: int) -> None:
        self._describe = describe
        self._max = queue_size
        self._lock = threading.Lock()
        self.dropped: dict[str, int] = dict.fromkeys((RUN, ALERT, METRIC, HEALTH), 0)
        self.rejected = 0
        self._unlogged = 0
        self._last_log = -LOG_EVERY

    def reset(self) -> None:
        """In a forked child: its own figures (the parent's stay the parent's)."""
        self._lock = threading.Lock()
        self.dropped = dict.fromkeys(self.dropped, 0)
        self.rejected = self._unlogged = 0

    def drop(self, kind: str, n: int, now: float, *, log: bool = True) -> None:
        """Count ``n`` items of ``kind`` lost; ``log=False`` when the caller logs them."""
        with self._lock:
            self.dropped[kind] = self.dropped.get(kind, 0) + n
            if log:
                self._unlogged += n
        if log and now - self._last_log >= LOG_EVERY:
            self.report(now)

    def report(self, now: float) -> None:
        """Log the drops not yet reported (the first at once, then once a minute)."""
        with self._lock:
            unlogged, self._unlogged = self._unlogged, 0
            totals = dict(self.dropped)
        if not unlogged:
            return
        self._last_log = now
        logger.error(
            "gecko_otel: store queue full (%d items) or closed; dropped %d items "
            "since the last report (totals: %s). The database %s is unreachable or slower "
            "than the runs: raise MonitorConfig.store_queue_size or fix the database.",
            self._max,
            unlogged,
            totals,
            self._describe(),
        )

    def reject(self, kind: str, n: int, exc: BaseException) -> None:
        """Count ``n`` rows the database refused, and log why."""
        with self._lock:
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

    def data_dropped(self) -> int:
        """Runs, alerts and metric points lost (health snapshots are replaced by later ones)."""
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
