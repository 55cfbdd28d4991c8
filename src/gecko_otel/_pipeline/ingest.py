"""Handing finished runs to history, health and alerts, batching the quiet ones.

Most runs are *quiet*: a success of a known collector that is not slow, has
no active alert and lands in the same window bucket as its previous run.
Such a run cannot fire or resolve an alert by itself, so it waits in a short
FIFO, stamped with the time it ended, and is processed with others in a
batch: when 64 are waiting, when a run that matters arrives, before any
query, and on every watchdog tick. In a batch the per-run work runs in a
tight loop, which costs a fraction of doing it between the SDK's span and
metric calls, and quiet runs of one collector that waited in a row are
counted together: one lock, one alert evaluation after the last. Runs that
matter (failures, timeouts, slow runs, a collector's first run, runs of a
collector with an active alert, a run that moves its window on) are
processed at once, after whatever is waiting, so a collector's runs are
always counted in the order they ended.

One exception to "cannot fire": a condition that still holds after its
alert was resolved by hand fires again when the next run is processed, which
for a quiet run can be as late as the next watchdog tick.

Threading: ``add`` runs on the thread that ended the run; deque appends and
pops are atomic, and the alerting lock serialises drains with the watchdog's
evaluations, so no run is lost, counted twice, or overtaken by a stale
evaluation. A drain processes what is waiting, O(1) per run; a thread ending
a run that matters may wait for a drain or one collector's evaluation, never
for notifications or alert changes being handed on (that happens after the
lock is released).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from gecko_otel._values.records import FinishedRun

if TYPE_CHECKING:
    from gecko_otel._config import MonitorConfig
    from gecko_otel.typing import IngestTarget

#: Quiet runs that may wait before a batch is processed.
BATCH: Final = 64


class RunIngest:
    """Feeds finished runs to history and alerting (see the module docs)."""

    def __init__(self, alerting: IngestTarget, config: MonitorConfig) -> None:
        self._alerting = alerting
        self._pending: deque[tuple[FinishedRun, float, bool]] = deque()
        # With a throughput rule a quiet-looking run can still fire an alert.
        #: Off while a throughput rule may apply; the pipeline updates it
        #: when thresholds change.
        self.batching = config.min_records_per_second is None and not any(
            t.min_records_per_second for t in config.collectors.values()
        )

    def add(self, run: FinishedRun) -> None:
        """Take one finished run. O(1) amortised; never blocks on I/O."""
        alerting = self._alerting
        ended = alerting.now()
        pending = self._pending
        alerting.keep_watchdog_running()
        if self.batching and len(pending) < BATCH - 1 and alerting.is_quiet(run, ended):
            pending.append((run, ended, True))
            return
        pending.append((run, ended, False))
        self.drain()

    def drain(self) -> None:
        """Process every waiting run, oldest first: quiet runs of one collector that
        waited in a row together, the others one by one."""
        if not self._pending:
            return
        alerting, pending = self._alerting, self._pending
        quiet: list[tuple[FinishedRun, float]] = []
        with alerting.lock:
            while True:
                try:
                    run, ended, is_quiet = pending.popleft()
                except IndexError:
                    break
                if quiet and (not is_quiet or run.collector_type != quiet[0][0].collector_type):
                    self._observe_quiet(quiet)
                    quiet = []
                if is_quiet:
                    quiet.append((run, ended))
                else:
                    alerting.observe(run, ended)  # adds it to the history too
            if quiet:
                self._observe_quiet(quiet)
        alerting.send_alerts()  # after the lock: no drain waits on handing them on

    def _observe_quiet(self, runs: list[tuple[FinishedRun, float]]) -> None:
        if len(runs) == 1:
            self._alerting.observe(*runs[0])
        else:
            self._alerting.observe_quiet(runs[0][0].collector_type, runs)
