"""One collector's health state: streaks, last runs, and the sliding window.

The success-rate window is a ring of `BUCKETS` time buckets (runs, successes,
durations, records) with running sums, so the window's success rate, average
duration and throughput are O(1) to read and to update per run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

from gecko_otel._config import Thresholds
from gecko_otel._health.baseline import Baseline
from gecko_otel._values.records import ExecutionStatus, FinishedRun

#: The window is kept as this many buckets, so a run may leave the window up
#: to 1/BUCKETS of the window early (15 minutes of 24 hours).
BUCKETS: Final = 96

_NOT_STARTED: Final = frozenset({ExecutionStatus.MISSED, ExecutionStatus.SKIPPED})


class CollectorState:
    """Incremental health state of one collector. Guarded by ``lock``."""

    __slots__ = (
        "baseline",
        "bucket_ids",
        "consecutive_failures",
        "dur_count",
        "dur_sum",
        "expired_upto",
        "first_seen",
        "last_failure",
        "last_success",
        "lock",
        "ok",
        "records",
        "skipped",
        "skipped_at",
        "started_executions",
        "sum_dur_count",
        "sum_dur_sum",
        "sum_ok",
        "sum_records",
        "sum_total",
        "thresholds",
        "total",
        "total_executions",
    )

    def __init__(self, thresholds: Thresholds, now: float) -> None:
        self.thresholds = thresholds
        self.lock = threading.Lock()
        self.first_seen = now
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.skipped = False  # a scheduled run was skipped (overlap) and no clean run since
        self.skipped_at = 0.0
        self.started_executions = 0
        self.consecutive_failures = 0
        self.total_executions = 0
        self.bucket_ids = [-1] * BUCKETS
        self.total = [0] * BUCKETS
        self.ok = [0] * BUCKETS
        self.dur_sum = [0.0] * BUCKETS
        self.dur_count = [0] * BUCKETS
        self.records = [0] * BUCKETS
        self.sum_total = 0
        self.sum_ok = 0
        self.sum_dur_sum = 0.0
        self.sum_dur_count = 0
        self.sum_records = 0
        self.expired_upto = -1  # buckets with ids <= this are out of the sums
        self.baseline = Baseline()

    def _drop(self, i: int) -> None:
        self.sum_total -= self.total[i]
        self.sum_ok -= self.ok[i]
        self.sum_dur_sum -= self.dur_sum[i]
        self.sum_dur_count -= self.dur_count[i]
        self.sum_records -= self.records[i]
        self.total[i] = self.ok[i] = self.dur_count[i] = self.records[i] = 0
        self.dur_sum[i] = 0.0

    def expire(self, bucket: int) -> None:
        """Take buckets that left the window (ids <= bucket - BUCKETS) out of the sums."""
        oldest_kept = bucket - BUCKETS + 1
        if self.expired_upto >= oldest_kept - 1:
            return
        if oldest_kept - self.expired_upto > BUCKETS:
            # A long quiet spell: look at every slot rather than every bucket id.
            slots: range | list[int] = range(BUCKETS)
        else:
            slots = [b % BUCKETS for b in range(self.expired_upto + 1, oldest_kept)]
        for i in slots:
            if -1 < self.bucket_ids[i] < oldest_kept:
                self._drop(i)
                self.bucket_ids[i] = -1
        self.expired_upto = oldest_kept - 1

    def add(
        self, bucket: int, status: ExecutionStatus, duration: float | None, records: int
    ) -> None:
        if status in _NOT_STARTED:
            return  # missed/skipped runs have rules of their own (missed_run, overlap)
        i = bucket % BUCKETS
        if self.bucket_ids[i] != bucket:  # first run in this bucket: rotate
            self.expire(bucket)
            self._drop(i)
            self.bucket_ids[i] = bucket
        self.total[i] += 1
        self.sum_total += 1
        if status.is_successful:
            self.ok[i] += 1
            self.sum_ok += 1
        if duration is not None:
            self.dur_sum[i] += duration
            self.sum_dur_sum += duration
            self.dur_count[i] += 1
            self.sum_dur_count += 1
        self.records[i] += records
        self.sum_records += records


def open_overlap(runs: Sequence[FinishedRun]) -> float | None:
    """When the last skip happened, if no run started after it (unix seconds), else None."""
    skipped = [r.start_ns for r in runs if r.status is ExecutionStatus.SKIPPED]
    if not skipped:
        return None
    last = max(skipped)
    if any(
        r.start_ns > last and r.status not in (ExecutionStatus.MISSED, ExecutionStatus.SKIPPED)
        for r in runs
    ):
        return None
    return last / 1e9
