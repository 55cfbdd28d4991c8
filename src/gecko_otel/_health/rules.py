"""The health evaluator: incremental per-collector state and the rules.

Every finished run updates its collector's `CollectorState` in O(1):
streaks, last success and failure, and a ring of time buckets covering the
success-rate window (counts, durations, records), whose running sums make the
window's success rate, average duration and throughput O(1) to read. Rules
are checked against that state when a run ends and, for the time-based ones
(``stale``), when the watchdog ticks.

Rules, with the alert each raises (see `MonitorConfig`
for the thresholds):

=====================  ==========  ============================================
rule                   level       holds when
=====================  ==========  ============================================
consecutive_failures   critical    failed/timed-out runs in a row >= maximum
low_success_rate       warning     window success rate < minimum, once the
                                   window holds ``min_runs_for_rate`` runs
slow_execution         warning     window average run time > maximum
low_throughput         warning     window records per second < minimum (if set)
stale                  warning     no successful run for ``stale_after``;
                       critical    escalates after twice ``stale_after``
overlap                warning     the last scheduled run was skipped because
                                   the previous one was still running
=====================  ==========  ============================================
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Final

from gecko_otel._checks import seconds
from gecko_otel._config import MonitorConfig, Thresholds
from gecko_otel._guard import at_fork_in_child
from gecko_otel._health.baseline import anomalies, no_data
from gecko_otel._health.thresholds import Stored, has_throughput_rule, in_force
from gecko_otel._health.window import BUCKETS, CollectorState
from gecko_otel._values.health import (
    RULE_CONSECUTIVE_FAILURES,
    RULE_LOW_SUCCESS_RATE,
    RULE_LOW_THROUGHPUT,
    RULE_OVERLAP,
    RULE_SLOW_EXECUTION,
    RULE_STALE,
    SCORE_CAPS,
    AlertLevel,
    BaselineState,
    CollectionStatus,
    CollectorHealth,
    Condition,
    health_score,
    span_text,
)
from gecko_otel._values.records import ExecutionStatus, FinishedRun, utc_seconds

_NOT_STARTED: Final = frozenset({ExecutionStatus.MISSED, ExecutionStatus.SKIPPED})
_NONE: Final[list[Condition]] = []  # shared "no condition holds"; never mutated


class HealthEvaluator:
    """Per-collector health, updated by every finished run.

    Args:
        config: Thresholds and the window.

    Threading: ``observe`` runs on the thread that ends a run and takes only
    that collector's lock; the other methods may run on any thread.
    """

    def __init__(self, config: MonitorConfig) -> None:
        self._config = config
        self._width = seconds(config.success_rate_window) / BUCKETS
        self._stored: Stored = {}
        self._states: dict[str, CollectorState] = {}
        #: Stored baselines of collectors without a state here yet: taken when one is made.
        self._waiting_baselines: dict[str, BaselineState] = {}
        self._lock = threading.Lock()
        at_fork_in_child(self, "_reset_locks")

    def _reset_locks(self) -> None:
        self._lock = threading.Lock()
        for state in self._states.values():
            state.lock = threading.Lock()

    def collector_types(self) -> list[str]:
        """Collectors known to the evaluator, sorted."""
        return sorted(self._states)

    def state(self, collector_type: str, now: float) -> CollectorState:
        """The collector's state, created on first sight (the pipeline's roster bounds them)."""
        state = self._states.get(collector_type)
        if state is not None:
            return state
        with self._lock:
            state = self._states.get(collector_type)
            if state is None:
                state = CollectorState(in_force(self._config, self._stored, collector_type), now)
                waiting = self._waiting_baselines.pop(collector_type, None)
                if waiting is not None:
                    state.baseline.adopt(waiting, state.thresholds, blend=False)
                self._states[collector_type] = state
            return state

    def forget(self, collector_type: str) -> None:
        """Drop an evicted collector's state."""
        with self._lock:
            self._states.pop(collector_type, None)

    def restore(
        self,
        collector_type: str,
        *,
        now: float,
        buckets: Sequence[tuple[int, int, int, float, int, int]],
        first_seen: float | None,
        last_success: float | None,
        last_failure: float | None,
        consecutive_failures: int,
        total_executions: int,
        skipped_at: float | None = None,
    ) -> bool:
        """Rebuild a collector's state from the store after a restart.

        ``buckets`` are the window's buckets as (bucket id, runs, successful
        runs, duration sum, durations counted, records); streaks, last
        success and failure and totals come from ``collection_metadata``.
        A collector that already has runs in this process is left alone.
        Returns False when it was not restored.
        """
        state = self.state(collector_type, first_seen if first_seen is not None else now)
        with state.lock:
            if state.total_executions:
                return False
            if first_seen is not None:
                # A configured collector's state exists from the start, with
                # the Monitor's start as first seen; the stored one is older.
                state.first_seen = min(state.first_seen, first_seen)
            if skipped_at is not None:
                state.skipped, state.skipped_at = True, skipped_at
            current = int(now // self._width)
            for bucket, total, ok, dur_sum, dur_count, records in sorted(buckets):
                if bucket <= current - BUCKETS or bucket > current:
                    continue
                i = bucket % BUCKETS
                state.bucket_ids[i] = bucket
                state.total[i] += total
                state.ok[i] += ok
                state.dur_sum[i] += dur_sum
                state.dur_count[i] += dur_count
                state.records[i] += records
                state.sum_total += total
                state.sum_ok += ok
                state.sum_dur_sum += dur_sum
                state.sum_dur_count += dur_count
                state.sum_records += records
            state.expired_upto = current - BUCKETS
            state.last_success = last_success
            state.last_failure = last_failure
            state.consecutive_failures = consecutive_failures
            state.total_executions = total_executions
            # Any run that started (success, failure, cancelled...) leaves "unknown".
            started = last_success is not None or last_failure is not None or state.sum_total > 0
            state.started_executions = total_executions if started else 0
            return True

    def in_current_bucket(self, state: CollectorState, now: float) -> bool:
        """Whether a run at ``now`` lands in the bucket the collector's last run did."""
        bucket = int(now // self._width)
        return state.bucket_ids[bucket % BUCKETS] == bucket

    def existing_state(self, collector_type: str) -> CollectorState | None:
        """The collector's state if it has one (never creates it)."""
        return self._states.get(collector_type)

    def unknown(
        self, collector_type: str, now: float, extra: Sequence[Condition] = ()
    ) -> CollectorHealth:
        """Health of a collector that has not run: unknown, unless ``extra`` rules hold."""
        return CollectorHealth(
            collector_type=collector_type,
            status=_status(extra) if extra else CollectionStatus.UNKNOWN,
            last_success=None,
            last_failure=None,
            consecutive_failures=0,
            success_rate_24h=None,
            average_execution_time=None,
            p95_execution_time=None,
            records_per_second=None,
            runs_in_window=0,
            total_executions=0,
            health_score=None,
            issues=tuple(c.message for c in extra),
            rules=tuple(c.rule for c in extra),
            evaluated_at=utc_seconds(now) or datetime.now(timezone.utc),
        )

    def observe(
        self,
        collector_type: str,
        status: ExecutionStatus,
        duration: float | None,
        records: int,
        now: float,
    ) -> list[Condition]:
        """Count one finished run at unix time ``now``; the conditions that now hold."""
        state = self._states.get(collector_type) or self.state(collector_type, now)
        with state.lock:
            self._count(state, status, duration, records, now)
            return self._holding(state, now)

    def observe_many(
        self, collector_type: str, runs: Sequence[tuple[FinishedRun, float]]
    ) -> tuple[int, list[Condition]]:
        """Count one collector's quiet runs, each with the unix time it ended, in order,
        while none may be anomalous; how many were counted, and the conditions that
        hold after the last of them.

        A run judged quiet when it ended was judged against the baseline as it
        stood then; the runs counted before it here may have moved it. One that
        may now be anomalous stops the count: the caller counts it and the rest
        one by one, so an anomaly streak that holds only inside the batch alerts.
        """
        state = self._states.get(collector_type) or self.state(collector_type, runs[0][1])
        count = self._count
        counted = 0
        with state.lock:
            baseline = state.baseline
            for run, now in runs:
                records, duration = run.records_collected, run.duration_seconds
                if baseline.may_be_anomalous(records, duration):
                    break
                count(state, run.status, duration, records, now)
                counted += 1
            if not counted:
                return 0, _NONE
            return counted, self._holding(state, runs[counted - 1][1])

    def _count(
        self,
        state: CollectorState,
        status: ExecutionStatus,
        duration: float | None,
        records: int,
        now: float,
    ) -> None:
        state.total_executions += 1
        if status is ExecutionStatus.SKIPPED:
            state.skipped = True
            state.skipped_at = now
        elif status is not ExecutionStatus.MISSED:
            state.started_executions += 1
            if status.is_error:
                state.consecutive_failures += 1
                state.last_failure = now
            elif status.is_successful:
                state.consecutive_failures = 0
                state.last_success = now
                state.baseline.observe(records, duration, now, state.thresholds)
            # The overlap is over once a run that started after the last
            # skip has ended (the long run that caused it does not count).
            if state.skipped and now - (duration or 0.0) > state.skipped_at:
                state.skipped = False
        state.add(int(now // self._width), status, duration, records)

    def _holding(self, state: CollectorState, now: float) -> list[Condition]:
        """The conditions that hold for ``state`` (its lock held) at ``now``."""
        # The common case, checked inline: no rule can hold.
        t = state.thresholds
        if (
            state.consecutive_failures < t.max_consecutive_failures
            and (
                state.sum_total < t.min_runs_for_rate
                or 100.0 * state.sum_ok >= t.min_success_rate * state.sum_total
            )
            and state.sum_dur_sum <= t.max_execution_time * state.sum_dur_count
            and t.min_records_per_second is None
            and state.last_success is not None
            and now - state.last_success < t.stale_after
            and not state.skipped
            and (baseline := state.baseline).low_streak < t.anomaly_runs
            and baseline.slow_streak < t.anomaly_runs
            # no_data cannot hold: the run collected records, or it is off.
            and (
                baseline.last_records_at == now or not no_data(baseline, state.last_success, t, now)
            )
        ):
            return _NONE
        return self._conditions(state, now)

    def conditions(self, collector_type: str, now: float) -> list[Condition]:
        """The rules that hold for ``collector_type`` at unix time ``now``."""
        state = self._states.get(collector_type)
        if state is None:
            return []
        with state.lock:
            state.expire(int(now // self._width))
            return self._conditions(state, now)

    def thresholds(self, collector_type: str) -> Thresholds:
        """The thresholds in force for ``collector_type``."""
        state = self._states.get(collector_type)
        if state is not None:
            return state.thresholds
        return in_force(self._config, self._stored, collector_type)

    def retune(
        self, config: MonitorConfig | None = None, stored: Stored | None = None
    ) -> list[str]:
        """Put new thresholds in force: the configured ones, the stored ones, or both.

        Returns the known collectors whose thresholds changed (sorted); the
        caller re-evaluates them. A collector seen later starts with the new ones.
        """
        changed = []
        with self._lock:
            if config is not None:
                self._config = config
            if stored is not None:
                self._stored = stored
            for name, state in self._states.items():
                thresholds = in_force(self._config, self._stored, name)
                if thresholds != state.thresholds:
                    with state.lock:
                        state.thresholds = thresholds  # one reference: read whole by observe
                        state.baseline.set_bars(thresholds)
                    changed.append(name)
        return sorted(changed)

    def baselines(self, written: dict[str, int]) -> dict[str, BaselineState]:
        """Baselines that learned since ``written`` (collector to runs, updated here)."""
        out = {}
        for name, state in list(self._states.items()):
            with state.lock:
                baseline = state.baseline
                runs = baseline.records.count + baseline.duration.count
                # One still warming up has too little to tell the others.
                if baseline.ready and written.get(name) != runs:
                    out[name] = baseline.state()
                    written[name] = runs
        return out

    def adopt_baselines(self, stored: Mapping[str, BaselineState], *, blend: bool) -> list[str]:
        """Take stored baselines: a restart's (``blend`` False), or other processes'.

        Returns the collectors whose baseline moved (see `Baseline.adopt`).
        """
        moved = []
        for name, baseline in stored.items():
            with self._lock:  # against `state` creating it meanwhile
                state = self._states.get(name)
                if state is None:
                    if len(self._waiting_baselines) < self._config.max_collectors:
                        self._waiting_baselines[name] = baseline
                    continue
            with state.lock:
                if state.baseline.adopt(baseline, state.thresholds, blend=blend):
                    moved.append(name)
        return moved

    def has_throughput_rule(self) -> bool:
        """Whether any collector may have a throughput rule."""
        return has_throughput_rule(self._config, self._stored)

    def _conditions(self, state: CollectorState, now: float) -> list[Condition]:
        t = state.thresholds
        out: list[Condition] = []
        if state.consecutive_failures >= t.max_consecutive_failures:
            out.append(
                Condition(
                    rule=RULE_CONSECUTIVE_FAILURES,
                    level=AlertLevel.CRITICAL,
                    message=f"{state.consecutive_failures} consecutive failed runs "
                    f"(threshold {t.max_consecutive_failures})",
                    figures={
                        "consecutive_failures": state.consecutive_failures,
                        "threshold": t.max_consecutive_failures,
                    },
                )
            )
        if state.sum_total >= t.min_runs_for_rate:
            rate = 100.0 * state.sum_ok / state.sum_total
            if rate < t.min_success_rate:
                out.append(
                    Condition(
                        rule=RULE_LOW_SUCCESS_RATE,
                        level=AlertLevel.WARNING,
                        message=f"success rate {rate:.1f} % over the last "
                        f"{span_text(self._window)} (threshold {t.min_success_rate:g} %)",
                        figures={
                            "success_rate": round(rate, 2),
                            "runs": state.sum_total,
                            "threshold": t.min_success_rate,
                        },
                    )
                )
        if state.sum_dur_count:
            average = state.sum_dur_sum / state.sum_dur_count
            if average > t.max_execution_time:
                out.append(
                    Condition(
                        rule=RULE_SLOW_EXECUTION,
                        level=AlertLevel.WARNING,
                        message=f"average run time {average:.1f} s "
                        f"(threshold {t.max_execution_time:g} s)",
                        figures={
                            "average_execution_time": round(average, 3),
                            "threshold": t.max_execution_time,
                        },
                    )
                )
            if t.min_records_per_second is not None and state.sum_dur_sum > 0:
                rate = state.sum_records / state.sum_dur_sum
                if rate < t.min_records_per_second:
                    out.append(
                        Condition(
                            rule=RULE_LOW_THROUGHPUT,
                            level=AlertLevel.WARNING,
                            message=f"{rate:.2f} records per second "
                            f"(threshold {t.min_records_per_second:g})",
                            figures={
                                "records_per_second": round(rate, 3),
                                "threshold": t.min_records_per_second,
                            },
                        )
                    )
        if state.skipped:
            out.append(
                Condition(
                    rule=RULE_OVERLAP,
                    level=AlertLevel.WARNING,
                    message="a scheduled run was skipped: the previous run was still going",
                    figures={},
                )
            )
        out.extend(anomalies(state.baseline, state.last_success, t, now))
        since = state.last_success if state.last_success is not None else state.first_seen
        if now - since >= t.stale_after:
            out.append(
                Condition(
                    rule=RULE_STALE,
                    # Twice as long without a success escalates to critical.
                    level=AlertLevel.CRITICAL
                    if now - since >= 2 * t.stale_after
                    else AlertLevel.WARNING,
                    message=(
                        f"no successful run in the {span_text(now - since)} since it was first seen"
                        if state.last_success is None
                        else f"last successful run {span_text(now - since)} ago"
                    )
                    + f" (threshold {span_text(t.stale_after)})",
                    figures={
                        "seconds_since_success": round(now - since, 1),
                        "threshold": t.stale_after,
                    },
                )
            )
        return out

    @property
    def _window(self) -> float:
        return self._width * BUCKETS

    def health(
        self,
        collector_type: str,
        now: float,
        p95: float | None,
        extra: Sequence[Condition] = (),
    ) -> CollectorHealth | None:
        """The collector's health at ``now`` (``p95`` from history; ``extra``: schedule rules)."""
        state = self._states.get(collector_type)
        if state is None:
            return None
        with state.lock:
            state.expire(int(now // self._width))
            conditions = [*self._conditions(state, now), *extra]
            t = state.thresholds
            runs = state.sum_total
            rate = 100.0 * state.sum_ok / runs if runs else None
            average = state.sum_dur_sum / state.sum_dur_count if state.sum_dur_count else None
            throughput = state.sum_records / state.sum_dur_sum if state.sum_dur_sum > 0 else None
            total = state.total_executions
            started = state.started_executions
            last_success, last_failure = state.last_success, state.last_failure
            failures = state.consecutive_failures
            baseline = state.baseline
            usual_records, usual_duration = baseline.usual()
            baseline_runs, last_records_at = baseline.records.count, baseline.last_records_at
        if started == 0:  # nothing has run yet (missed/skipped runs never started)
            status = _status(conditions) if conditions else CollectionStatus.UNKNOWN
            score = None
        else:
            status = _status(conditions)
            score = min(health_score(rate, average, throughput, t), SCORE_CAPS[status])
        return CollectorHealth(
            collector_type=collector_type,
            status=status,
            last_success=utc_seconds(last_success),
            last_failure=utc_seconds(last_failure),
            consecutive_failures=failures,
            success_rate_24h=rate,
            average_execution_time=average,
            p95_execution_time=p95,
            records_per_second=throughput,
            runs_in_window=runs,
            total_executions=total,
            health_score=score,
            issues=tuple(c.message for c in conditions),
            rules=tuple(c.rule for c in conditions),
            evaluated_at=utc_seconds(now) or datetime.now(timezone.utc),
            usual_records=usual_records,
            usual_duration=usual_duration,
            baseline_runs=baseline_runs,
            last_records_at=utc_seconds(last_records_at),
        )


def _status(conditions: Sequence[Condition]) -> CollectionStatus:
    if any(c.critical for c in conditions):
        return CollectionStatus.CRITICAL
    return CollectionStatus.WARNING if conditions else CollectionStatus.HEALTHY
