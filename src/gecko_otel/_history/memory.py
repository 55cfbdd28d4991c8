"""In-memory execution history: bounded per collector, with running aggregates.

Each collector keeps its newest ``max_history_per_collector`` records in a
deque and a running `Aggregate` over every run it has seen, so
``statistics()`` over all runs is O(1) in the number of runs (percentiles come
from a log-bucket sketch with 1 % relative error). A statistics window reads
the records still held in memory inside that window.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Final

from gecko_otel._checks import INT64_MAX, check_seconds
from gecko_otel._config import MonitorConfig
from gecko_otel._guard import at_fork_in_child
from gecko_otel._values.records import (
    ExecutionRecord,
    ExecutionStatistics,
    ExecutionStatus,
    FinishedRun,
    to_ns,
    utc_ns,
)
from gecko_otel.errors import ConfigError

_STATUSES: Final = tuple(ExecutionStatus)
_STATUS_INDEX: Final = {status: i for i, status in enumerate(_STATUSES)}

# Log-bucket quantile sketch (as DDSketch): bucket i holds durations in
# (gamma**(i-1), gamma**i], so any quantile is within ALPHA relative error.
_ALPHA: Final = 0.01
_GAMMA: Final = (1 + _ALPHA) / (1 - _ALPHA)
_LOG_GAMMA: Final = math.log(_GAMMA)
_MIN_DURATION: Final = 1e-9
#: Sketch key for durations too small to take a logarithm of; kept apart
#: from key 0, which holds durations just under one second.
_ZERO_KEY: Final = -(2**31)


def duration_key(duration: float) -> int:
    """The sketch bucket of a duration (the store keeps it beside each run)."""
    return math.ceil(math.log(duration) / _LOG_GAMMA) if duration > _MIN_DURATION else _ZERO_KEY


class Aggregate:
    """Counts, sums and a duration sketch over a set of runs. Not thread-safe."""

    __slots__ = ("counts", "duration_count", "duration_sum", "first", "last", "records", "sketch")

    def __init__(self) -> None:
        self.counts = [0] * len(_STATUSES)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.records = 0
        self.first: int | None = None  # start, unix ns
        self.last: int | None = None
        self.sketch: dict[int, int] = {}

    def add(self, record: FinishedRun) -> None:
        self.counts[_STATUS_INDEX[record.status]] += 1
        self.records = min(self.records + record.records_collected, INT64_MAX)  # saturates
        duration = record.duration_seconds
        if duration is not None:
            self.duration_sum += duration
            self.duration_count += 1
            key = duration_key(duration)
            self.sketch[key] = self.sketch.get(key, 0) + 1
        start = record.start_ns
        if self.first is None or start < self.first:
            self.first = start
        if self.last is None or start > self.last:
            self.last = start

    def merge(self, other: Aggregate) -> None:
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.duration_sum += other.duration_sum
        self.duration_count += other.duration_count
        self.records = min(self.records + other.records, INT64_MAX)
        for key, count in other.sketch.items():
            self.sketch[key] = self.sketch.get(key, 0) + count
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last

    def copy(self) -> Aggregate:
        clone = Aggregate()
        clone.merge(self)
        return clone

    def quantile(self, q: float) -> float:
        if not self.duration_count:
            return 0.0
        rank = q * (self.duration_count - 1)
        seen = 0
        for key in sorted(self.sketch):
            seen += self.sketch[key]
            if seen > rank:
                return 0.0 if key == _ZERO_KEY else 2 * _GAMMA**key / (_GAMMA + 1)
        return 0.0  # pragma: no cover - the loop always reaches the rank

    def statistics(self, collector_type: str | None, window: float | None) -> ExecutionStatistics:
        counts = dict(zip(_STATUSES, self.counts, strict=True))
        total = sum(self.counts)
        successful = counts[ExecutionStatus.SUCCESS] + counts[ExecutionStatus.PARTIAL]
        return ExecutionStatistics(
            collector_type=collector_type,
            total_executions=total,
            successful_executions=counts[ExecutionStatus.SUCCESS],
            partial_executions=counts[ExecutionStatus.PARTIAL],
            failed_executions=counts[ExecutionStatus.FAILURE],
            timeout_executions=counts[ExecutionStatus.TIMEOUT],
            cancelled_executions=counts[ExecutionStatus.CANCELLED],
            missed_executions=counts[ExecutionStatus.MISSED],
            skipped_executions=counts[ExecutionStatus.SKIPPED],
            success_rate=100.0 * successful / total if total else 0.0,
            average_duration=self.duration_sum / self.duration_count
            if self.duration_count
            else 0.0,
            p50_duration=self.quantile(0.5),
            p95_duration=self.quantile(0.95),
            total_records_collected=self.records,
            records_per_second=self.records / self.duration_sum if self.duration_sum > 0 else 0.0,
            first_execution=_utc_ns(self.first),
            last_execution=_utc_ns(self.last),
            window_seconds=window,
        )


class _CollectorHistory:
    __slots__ = ("aggregate", "lock", "records")

    def __init__(self, maxlen: int) -> None:
        self.records: deque[FinishedRun] = deque(maxlen=maxlen)
        self.aggregate = Aggregate()
        self.lock = threading.Lock()


class History:
    """Execution records of every collector, bounded in memory.

    Threading: ``add`` is called on the threads that end runs and takes only
    the collector's own lock; queries may run on any thread.
    """

    def __init__(self, config: MonitorConfig) -> None:
        self._config = config
        self._collectors: dict[str, _CollectorHistory] = {}
        self._lock = threading.Lock()
        at_fork_in_child(self, "_reset_locks")

    def add(self, record: FinishedRun) -> None:
        """Keep ``record`` and count it in the collector's aggregates. O(1)."""
        collector = self._collectors.get(record.collector_type)
        if collector is None:
            collector = self._new_collector(record.collector_type)
        with collector.lock:
            collector.records.append(record)
            collector.aggregate.add(record)

    def add_many(self, collector_type: str, records: Iterable[FinishedRun]) -> None:
        """Keep one collector's ``records``, in order, as `add` does each."""
        collector = self._collectors.get(collector_type)
        if collector is None:
            collector = self._new_collector(collector_type)
        with collector.lock:
            append, count = collector.records.append, collector.aggregate.add
            for record in records:
                append(record)
                count(record)

    def restore(self, runs: Iterable[FinishedRun]) -> None:
        """Put stored runs back in memory, oldest first, without counting them again.

        They are listed by ``records()`` and feed percentiles, but stay out of
        the running aggregates (and so out of the records counter), which
        count what this process has seen.
        """
        for run in runs:
            collector = self._collectors.get(run.collector_type) or self._new_collector(
                run.collector_type
            )
            with collector.lock:
                collector.records.append(run)

    def _new_collector(self, collector_type: str) -> _CollectorHistory:
        # The run pipeline's roster keeps collectors within max_collectors.
        with self._lock:
            collector = self._collectors.get(collector_type)
            if collector is None:
                collector = _CollectorHistory(self._config.max_history_per_collector)
                self._collectors[collector_type] = collector
            return collector

    def forget(self, collector_type: str) -> None:
        """Drop everything held for an evicted collector."""
        with self._lock:
            self._collectors.pop(collector_type, None)

    def _reset_locks(self) -> None:
        # A lock held by another thread at fork() stays held forever in the
        # child; the child gets fresh ones.
        self._lock = threading.Lock()
        for collector in self._collectors.values():
            collector.lock = threading.Lock()

    def collector_types(self) -> list[str]:
        """Collectors that have finished at least one run, sorted."""
        return sorted(self._collectors)

    def records(
        self,
        collector_type: str | None = None,
        *,
        limit: int | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
    ) -> list[ExecutionRecord]:
        """Records newest first (by start), filtered.

        Runs of this process are ordered by their monotonic start, so a step
        of the wall clock cannot misorder them; runs restored from a store
        (wall times only) come before them, by their stored start time.
        """
        return [run.to_record() for run in self._runs(collector_type, limit, status, since)]

    def _runs(
        self,
        collector_type: str | None,
        limit: int | None = None,
        status: ExecutionStatus | str | None = None,
        since: datetime | None = None,
    ) -> list[FinishedRun]:
        limit = check_limit(limit)
        wanted = check_status(status)
        checked = check_since(since)
        since_ns = to_ns(checked) if checked is not None else None
        groups = []
        for collector in self._select(collector_type):
            with collector.lock:
                snapshot = list(collector.records)
            groups.append(_filtered(reversed(snapshot), wanted, since_ns))
        merged = heapq.merge(*groups, key=_order, reverse=True)
        if limit is None:
            return list(merged)
        return [run for _, run in zip(range(limit), merged, strict=False)]

    def statistics(
        self,
        collector_type: str | None = None,
        *,
        window: timedelta | float | None = None,
        now: datetime | None = None,
    ) -> ExecutionStatistics:
        """Aggregates over all runs, or over the in-memory runs started within ``window``."""
        seconds = check_window(window)
        total = Aggregate()
        if seconds is None:
            for collector in self._select(collector_type):
                with collector.lock:
                    total.merge(collector.aggregate)
        else:
            since = (now or datetime.now(timezone.utc)) - timedelta(seconds=seconds)
            for run in self._runs(collector_type, since=since):
                total.add(run)
        return total.statistics(collector_type, seconds)

    def cleanup(self, before: datetime) -> int:
        """Forget in-memory runs started before ``before``; how many went.

        Running statistics (all runs since the Monitor started) keep them.
        """
        cutoff = to_ns(before)
        removed = 0
        for collector in list(self._collectors.values()):
            with collector.lock:
                kept = [r for r in collector.records if r.start_ns >= cutoff]
                removed += len(collector.records) - len(kept)
                collector.records.clear()
                collector.records.extend(kept)
        return removed

    def durations(self, collector_type: str, since: datetime) -> list[float]:
        """Durations of the collector's in-memory runs started at or after ``since``."""
        collector = self._collectors.get(collector_type)
        if collector is None:
            return []
        since_ns = to_ns(since)
        with collector.lock:
            snapshot = list(collector.records)
        return [
            r.duration_seconds
            for r in snapshot
            if r.duration_seconds is not None and r.start_ns >= since_ns
        ]

    def per_collector_records(self) -> Iterator[tuple[str, int]]:
        """``(collector_type, total records)`` for every collector (for metrics)."""
        for name, collector in list(self._collectors.items()):
            yield name, collector.aggregate.records

    def per_collector_runs(self) -> Iterator[tuple[str, str, int]]:
        """``(collector_type, status, runs)`` for every status, zero included, of every
        collector held (restored ones at 0): runs this process ended, for metrics. A
        series that exists at 0 lets Prometheus' ``increase()`` see its first run."""
        for name, collector in list(self._collectors.items()):
            with collector.lock:  # one consistent set per collector
                counts = list(collector.aggregate.counts)
            for status, count in zip(_STATUSES, counts, strict=True):
                yield name, status.value, count

    def _select(self, collector_type: str | None) -> list[_CollectorHistory]:
        if collector_type is None:
            return list(self._collectors.values())
        collector = self._collectors.get(collector_type)
        return [collector] if collector is not None else []


def _order(run: FinishedRun) -> tuple[bool, float]:
    """Sort key, oldest first: restored runs by wall start, then this process's
    runs by monotonic start (wall times only say when, not in which order)."""
    mono = run.start_mono
    return (False, run.start_ns) if mono is None else (True, mono)


def _filtered(
    runs: Iterable[FinishedRun],
    status: ExecutionStatus | None,
    since_ns: int | None,
) -> list[FinishedRun]:
    out = [
        r
        for r in runs
        if (status is None or r.status is status) and (since_ns is None or r.start_ns >= since_ns)
    ]
    # Runs end out of start order when they overlap; merge needs sorted input.
    out.sort(key=_order, reverse=True)
    return out


def _utc_ns(ns: int | None) -> datetime | None:
    return None if ns is None else utc_ns(ns)


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative int or None, got {limit!r}")
    return limit


def check_status(status: ExecutionStatus | str | None) -> ExecutionStatus | None:
    if status is None or isinstance(status, ExecutionStatus):
        return status
    try:
        return ExecutionStatus(status)
    except ValueError:
        valid = ", ".join(s.value for s in ExecutionStatus)
        raise ConfigError(f"unknown status {status!r}; use one of: {valid}") from None


def check_since(since: datetime | None) -> datetime | None:
    if since is None:
        return None
    if not isinstance(since, datetime):
        raise ConfigError(f"since must be a datetime, got {since!r}")
    if since.tzinfo is None:
        raise ConfigError(
            "since must be timezone-aware (e.g. datetime.now(timezone.utc)); got a naive datetime"
        )
    return since


def check_window(window: timedelta | float | None) -> float | None:
    return None if window is None else check_seconds("window", window)
