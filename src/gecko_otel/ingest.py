"""Handing finished runs to history, health and alerts, batching the quiet ones.

Most runs are *quiet*: a success of a collector that is known, not slow, and
has no active alert. Nothing about such a run can fire or resolve an alert,
so it waits in a short FIFO and is processed with others in a batch: when 64
are waiting, when a run that matters arrives, before any query, and on every
watchdog tick. In a batch the per-run work runs in a tight loop, which costs
a fraction of doing it between the SDK's span and metric calls. Runs that
matter (failures, timeouts, slow runs, a collector's first run, runs of a
collector with an active alert) are processed at once, after whatever is
waiting, so a collector's runs are always counted in the order they ended.

Threading: ``add`` runs on the thread that ended the run; deque appends and
pops are atomic, and one lock serialises the drains, so no run is lost or
counted twice. Drains hold that lock for at most one batch of O(1) steps.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Final

from gecko_otel.records import ExecutionStatus, FinishedRun

if TYPE_CHECKING:
    from gecko_otel.alerting import Alerting
    from gecko_otel.config import MonitorConfig
    from gecko_otel.history import History

#: Quiet runs that may wait before a batch is processed.
BATCH: Final = 64
_QUIET_STATUSES: Final = frozenset({ExecutionStatus.SUCCESS, ExecutionStatus.PARTIAL})


class RunIngest:
    """Feeds finished runs to history and alerting (see the module docs)."""

    def __init__(self, history: History, alerting: Alerting, config: MonitorConfig) -> None:
        self._history = history
        self._alerting = alerting
        self._pending: deque[FinishedRun] = deque()
        self._lock = threading.Lock()
        # With a throughput rule a quiet-looking run can still fire an alert.
        self._batching = config.min_records_per_second is None and not any(
            t.min_records_per_second for t in config.collectors.values()
        )

    def add(self, run: FinishedRun) -> None:
        """Take one finished run. O(1) amortised; never blocks on I/O."""
        pending = self._pending
        pending.append(run)
        if self._batching and len(pending) < BATCH and self._quiet(run):
            return
        self.drain()

    def _quiet(self, run: FinishedRun) -> bool:
        if run.status not in _QUIET_STATUSES:
            return False
        state = self._alerting.evaluator.existing_state(run.collector_type)
        if state is None:
            return False  # a first run registers the collector now
        duration = run.duration_seconds
        if duration is not None and duration > state.thresholds.max_execution_time:
            return False
        return not self._alerting.engine.has_active(run.collector_type)

    def drain(self) -> None:
        """Process every waiting run, oldest first."""
        if not self._pending:
            return
        history, alerting, pending = self._history, self._alerting, self._pending
        with self._lock:
            while True:
                try:
                    run = pending.popleft()
                except IndexError:
                    return
                history.add(run)
                alerting.observe(run)
