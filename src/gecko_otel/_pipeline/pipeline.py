"""The run pipeline: every finished run through history, health rules and alerts.

`RunPipeline` owns the run ingest, the health evaluator, the schedule
expectations, the alert engine, the handler dispatcher and the watchdog, and
hands what it sees on to one `RunConsumer` (the
store): finished runs as they arrive, alert changes as they happen, health
snapshots on every watchdog tick and flush. Per finished run it does O(1)
work on the run's thread; everything that waits on a clock runs on the
watchdog thread, and handlers run on the dispatcher's threads. ``lock``
(and the engine's inside it) is held only to count runs and decide alerts:
notifications and alert changes are handed on after it is released
(`send_alerts`), whoever made them, a handler calling back included.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from gecko_otel._alerts.dispatcher import AlertDispatcher
from gecko_otel._alerts.engine import AlertEngine, Suppression
from gecko_otel._checks import check_collector_type, check_seconds, seconds
from gecko_otel._config import MonitorConfig, Thresholds
from gecko_otel._guard import at_fork_in_child, guarded
from gecko_otel._health.expectations import Expectation, Schedules
from gecko_otel._health.rules import HealthEvaluator
from gecko_otel._health.thresholds import Stored, configure
from gecko_otel._health.window import BUCKETS, open_overlap
from gecko_otel._history.memory import History
from gecko_otel._pipeline.clock import SteadyClock
from gecko_otel._pipeline.ingest import RunIngest
from gecko_otel._pipeline.roster import Roster
from gecko_otel._values.alerts import Alert
from gecko_otel._values.health import (
    AlertLevel,
    BaselineState,
    CollectionStatus,
    CollectorHealth,
    Condition,
    SystemHealth,
    worst,
)
from gecko_otel._values.records import FinishedRun
from gecko_otel._worker import Worker
from gecko_otel.errors import ConfigError
from gecko_otel.typing import AlertHandler, RunConsumer

Clock = Callable[[], float]


class RunPipeline:
    """History, health, alerts, handlers and the watchdog of one Monitor.

    Args:
        config: Thresholds, cooldowns, timeouts.
        history: The in-memory history runs are added to (and p95 durations read from).
        consumer: Hears of every run, alert change and health change (the store).
        clock: The wall clock, unix seconds; ``time.time`` by default (tests
            pass a fake clock). Time is measured on a `SteadyClock` made from
            it, so a step of the wall clock fires and resolves nothing.
        handlers: Alert handlers to start with.
        watchdog: Whether to run the watchdog thread (tests that drive the
            clock by hand call `evaluate` instead).
    """

    def __init__(
        self,
        config: MonitorConfig,
        history: History,
        consumer: RunConsumer,
        *,
        clock: Clock | None = None,
        handlers: Iterable[AlertHandler] = (),
        watchdog: bool = True,
    ) -> None:
        self._config = config
        self._history = history
        self._consumer = consumer
        self._consumer_add_run = consumer.add_run  # bound once: it is called per run
        self._clock = SteadyClock(clock)
        self.evaluator = HealthEvaluator(config)
        self.dispatcher = AlertDispatcher(
            timeout=seconds(config.handler_timeout), queue_size=config.alert_queue_size
        )
        self.engine = AlertEngine(
            self.evaluator, self.dispatcher.submit, on_change=consumer.alert_changed
        )
        self.schedules = Schedules()
        for handler in handlers:
            self.add_handler(handler)
        self._p95: dict[str, tuple[int, int, float | None]] = {}
        self._published: dict[str, tuple[str, float | None]] = {}
        #: The collectors tracked in memory, within ``max_collectors``.
        self.roster = Roster(
            config.max_collectors,
            self.engine,
            self._clock,
            forget=(history.forget, self.evaluator.forget),
            caches=(self._p95, self._published),
        )
        # Collectors named in the configuration are watched from the start, so
        # one that never runs in this process still goes stale.
        started = self._clock()
        for name in config.collectors:
            self.evaluator.state(name, started)
            self.roster.seen(name, succeeded=True)
        # The watchdog: time-based rules (stale, missed runs, repeats, expiring
        # suppressions) need a clock, since a collector that stops makes no runs.
        self._watchdog = Worker(
            self, "_tick", name="gecko-otel-watchdog", interval=seconds(config.watchdog_interval)
        )
        self._use_watchdog = watchdog
        #: Serialises run processing with evaluations: the run ingest drains
        #: under it and the watchdog's tick evaluates each collector under
        #: it, so a tick never applies conditions computed before a run that
        #: was processed in the meantime.
        self.lock = threading.RLock()
        self._ingest = RunIngest(self, config)
        at_fork_in_child(self, "_reset_lock")
        if watchdog:
            self._watchdog.ensure_running()

    def _reset_lock(self) -> None:
        self.lock = threading.RLock()

    def _tick(self, timed_out: bool) -> None:
        if timed_out:
            self.evaluate()

    def keep_watchdog_running(self) -> None:
        """Restart the watchdog thread if this process lost it (after fork())."""
        if self._use_watchdog:
            self._watchdog.ensure_running()

    # -- per run -------------------------------------------------------------

    def now(self) -> float:
        """The clock's current reading (unix seconds, advancing monotonically)."""
        return self._clock.base + self._clock.monotonic()  # inline: called per run

    def add(self, run: FinishedRun) -> None:
        """Take a finished run (on the thread that ended it). O(1) amortised, no I/O."""
        self._ingest.add(run)
        self._consumer_add_run(run)

    def is_quiet(self, run: FinishedRun, ended: float) -> bool:
        """Whether ``run`` can wait in a batch: it cannot fire or resolve an alert alone."""
        if not run.status.is_successful:
            return False
        evaluator = self.evaluator
        state = evaluator.existing_state(run.collector_type)
        if state is None:
            return False  # a first run registers the collector now
        duration = run.duration_seconds
        if duration is not None and duration > state.thresholds.max_execution_time:
            return False
        if state.baseline.may_be_anomalous(run.records_collected, duration):
            return False
        if not evaluator.in_current_bucket(state, ended):
            return False  # the window moves on: old runs leave, rates change
        return not self.engine.has_active(run.collector_type)

    def drain(self) -> None:
        """Process the runs waiting in the ingest (before any query or flush)."""
        self._ingest.drain()

    def send_alerts(self) -> None:
        """Hand on the notifications and alert changes decided (never holding ``lock``)."""
        self.engine.send()

    def observe(self, record: FinishedRun, ended: float) -> None:
        """Count a run that ended at unix time ``ended`` and update its alerts. O(1).

        Called under ``lock`` by the run ingest.
        """
        collector_type = record.collector_type
        roster = self.roster
        if collector_type not in roster:
            roster.make_room()
        self._history.add(record)
        conditions = self.evaluator.observe(
            collector_type,
            record.status,
            record.duration_seconds,
            record.records_collected,
            ended,
        )
        if self.schedules.has(collector_type):
            self.schedules.ended(collector_type, record.execution_id)
            conditions = [*(conditions or ()), *self.schedules.conditions(collector_type, ended)]
        self.engine.update(collector_type, conditions, ended, by_run=True)
        roster.seen(collector_type, record.status.is_successful)

    def observe_quiet(self, collector_type: str, runs: list[tuple[FinishedRun, float]]) -> None:
        """Count one collector's quiet runs (see `is_quiet`), in order, as `observe` does
        each; their conditions are evaluated once, after the last. From a run that may
        have become anomalous since it ended, one by one (see
        `HealthEvaluator.observe_many`). O(1) per run.

        Called under ``lock`` by the run ingest.
        """
        counted = 0
        if collector_type in self.roster and not self.engine.has_active(collector_type):
            counted, conditions = self.evaluator.observe_many(collector_type, runs)
        if counted:
            together = runs[:counted]
            self._history.add_many(collector_type, [run for run, _ in together])
            ended = together[-1][1]
            schedules = self.schedules
            if schedules.has(collector_type):
                for run, _ in together:
                    schedules.ended(collector_type, run.execution_id)
                conditions = [*conditions, *schedules.conditions(collector_type, ended)]
            self.engine.update(collector_type, conditions, ended, by_run=True)
            self.roster.seen(collector_type, True)
        # Evicted or alerted since, or a run that may now be anomalous: one at a time.
        for run, ended in runs[counted:]:
            self.observe(run, ended)

    def run_started(self, collector_type: str, execution_id: str) -> None:
        """A run of a collector with an expectation started (on the run's thread)."""
        with self.lock:  # serialised with ticks, so none applies a stale missed_run after it
            now = self._clock()
            self.schedules.started(collector_type, execution_id, now, self._clock.wall())
            changed = self.engine.has_active(collector_type)
            if changed:  # e.g. missed_run: resolve it now
                self._ingest.drain()
                self.engine.update(
                    collector_type, self._conditions(collector_type, now), now, by_run=False
                )
        if changed:  # what else was decided, its deciders hand on
            self.engine.send()

    def expect(
        self,
        collector_type: str,
        expectation: Expectation,
        tz: tzinfo | None,
        first_due: float | None,
    ) -> None:
        """Arm (or replace) a collector's schedule expectation."""
        wall = self._clock.wall()
        self.schedules.expect(
            collector_type, expectation, self._clock(), wall, tz=tz, first_due=first_due
        )

    def unexpect(self, collector_type: str) -> bool:
        """Withdraw a collector's expectation (its schedule alerts resolve); False if none."""
        removed = self.schedules.remove(collector_type)
        if removed:
            self.evaluate_one(collector_type)
        return removed

    def evaluate_one(self, collector_type: str, *, retuned: bool = False) -> None:
        """Evaluate one collector's rules now (after its expectation or thresholds changed)."""
        with self.lock:
            self._ingest.drain()
            now = self._clock()
            conditions = self._conditions(collector_type, now)
            self.engine.update(collector_type, conditions, now, by_run=False, retuned=retuned)
        self.engine.send()

    # -- thresholds ---------------------------------------------------------------

    def thresholds(self, collector_type: str) -> Thresholds:
        return self.evaluator.thresholds(collector_type)

    def set_thresholds(
        self, collector_type: str | None, changes: Mapping[str, Any]
    ) -> MonitorConfig:
        """Change this process's configured thresholds (validated), re-evaluate; the new config."""
        with self.lock:  # one change at a time: none is lost
            config = self._config = configure(self._config, collector_type, changes)
            changed = self.evaluator.retune(config=config)
            self._ingest.batching = not self.evaluator.has_throughput_rule()
        for name in changed:
            self.evaluate_one(name, retuned=True)
        return config

    def apply_thresholds(self, stored: Stored) -> None:
        """Put the store's thresholds in force (replacing the previous set) and re-evaluate."""
        with self.lock:
            changed = self.evaluator.retune(stored=stored)
            self._ingest.batching = not self.evaluator.has_throughput_rule()
        for name in changed:
            self.evaluate_one(name, retuned=True)

    def _conditions(self, collector_type: str, now: float) -> list[Condition]:
        return [
            *self.evaluator.conditions(collector_type, now),
            *self.schedules.conditions(collector_type, now),
        ]

    def evaluate(self) -> None:
        """Evaluate the time-based rules of every collector now (the watchdog's tick).

        Each collector is evaluated under ``lock`` after the runs waiting to be
        processed, so runs ending meanwhile wait for one collector at most.
        """
        now = self._clock()
        names = set(self.evaluator.collector_types()) | set(self.schedules.collector_types())
        for collector_type in sorted(names):
            with self.lock:
                self._ingest.drain()
                conditions = self._conditions(collector_type, now)
                self.engine.update(collector_type, conditions, now, by_run=False)
        with self.lock:
            self.engine.tick(now)
            self.publish_health()
        self.engine.send()

    # -- history ------------------------------------------------------------------

    def collector_types(self) -> list[str]:
        """Collectors this process has seen finish a run."""
        self._ingest.drain()
        return self._history.collector_types()

    def records_per_collector(self) -> list[tuple[str, int]]:
        """Records collected so far, per collector."""
        self._ingest.drain()
        return list(self._history.per_collector_records())

    def runs_per_collector(self) -> list[tuple[str, str, int]]:
        """Runs ended so far in this process, per collector and status."""
        self._ingest.drain()
        return list(self._history.per_collector_runs())

    # -- health ------------------------------------------------------------------

    def health(self, collector_type: str | None = None) -> dict[str, CollectorHealth]:
        """Health per collector (one, or all known), sorted by collector type."""
        with self.lock:
            self._ingest.drain()
        now = self._clock()
        if collector_type is not None:
            names = [collector_type]
        else:  # collectors that ran, and those expected to that never did
            names = sorted(
                set(self.evaluator.collector_types()) | set(self.schedules.collector_types())
            )
        out = {}
        for name in names:
            extra = self.schedules.conditions(name, now)
            health = self.evaluator.health(name, now, self._p95_duration(name, now), extra)
            if health is None:
                health = self.evaluator.unknown(name, now, extra)  # asked for, never seen run
            if health is not None:
                out[name] = health
        return out

    def system_health(self, dropped: dict[str, int], limits: dict[str, Any]) -> SystemHealth:
        """All collectors at a glance; ``dropped`` and ``limits`` add the Monitor's own."""
        everything = self.health()
        by_status = dict.fromkeys(CollectionStatus, 0)
        for health in everything.values():
            by_status[health.status] += 1
        scores = [h.health_score for h in everything.values() if h.health_score is not None]
        return SystemHealth(
            overall_status=worst([h.status for h in everything.values()]),
            total_collectors=len(everything),
            healthy_collectors=by_status[CollectionStatus.HEALTHY],
            warning_collectors=by_status[CollectionStatus.WARNING],
            critical_collectors=by_status[CollectionStatus.CRITICAL],
            unknown_collectors=by_status[CollectionStatus.UNKNOWN],
            average_health_score=round(sum(scores) / len(scores), 2) if scores else None,
            active_alerts=self.engine.active_counts(),
            dropped={**dropped, **self.dispatcher.counts(), **self.roster.counts()},
            limits={**self.roster.limits(), **limits},
            evaluated_at=datetime.fromtimestamp(self._clock(), timezone.utc),
        )

    def _p95_duration(self, collector_type: str, now: float) -> float | None:
        # Cached per collector until it runs again or the window moves on a
        # bucket, so health() over many idle collectors stays cheap.
        state = self.evaluator.existing_state(collector_type)
        if state is None:
            return None
        window = seconds(self._config.success_rate_window)
        key = (state.total_executions, int(now // (window / BUCKETS)))
        cached = self._p95.get(collector_type)
        if cached is not None and cached[:2] == key:
            return cached[2]
        since = datetime.fromtimestamp(now - window, timezone.utc)
        durations = sorted(self._history.durations(collector_type, since))
        value = durations[math.ceil(0.95 * len(durations)) - 1] if durations else None
        self._p95[collector_type] = (*key, value)
        return value

    # -- alerts --------------------------------------------------------------------

    def alerts(
        self,
        *,
        level: AlertLevel | str | None = None,
        collector_type: str | None = None,
        active_only: bool = True,
    ) -> list[Alert]:
        """Alerts, newest first."""
        parsed = AlertLevel.parse(level) if level is not None else None
        return self.engine.alerts(
            level=parsed, collector_type=collector_type, active_only=active_only, now=self._clock()
        )

    def active_alerts(self) -> list[Alert]:
        """This process's active alerts."""
        return self.alerts(level=None, collector_type=None, active_only=True)

    def acknowledge(self, alert_id: str) -> bool:
        done = self.engine.acknowledge(alert_id, self._clock())
        self.engine.send()
        return done

    def resolve(self, alert_id: str) -> bool:
        done = self.engine.resolve(alert_id, self._clock())
        self.engine.send()
        return done

    def owns(self, alert_id: str) -> bool:
        """Whether the alert is this process's (active, or resolved and not forgotten)."""
        return self.engine.knows(alert_id)

    def suppress(
        self, collector_type: str, duration: timedelta | float, rule: str | None
    ) -> datetime:
        check_collector_type(collector_type)
        if rule is not None and (not isinstance(rule, str) or not rule):
            raise ConfigError(f"rule must be a rule name or None, got {rule!r}")
        length = check_seconds("duration", duration)
        now = self._clock()
        self.engine.suppress(collector_type, rule, now + length)
        return datetime.fromtimestamp(now + length, timezone.utc)

    def unsuppress(self, collector_type: str, rule: str | None) -> int:
        ended = self.engine.unsuppress(collector_type, rule, self._clock())
        self.engine.send()
        return ended

    def apply_silences(self, silences: Iterable[tuple[str, str | None, float]]) -> None:
        """Silence as the store says: (collector type, rule or None, until unix time) each,
        replacing the store's previous set (this process's own suppressions stay)."""
        self.engine.set_stored(
            [Suppression(collector_type, rule, until) for collector_type, rule, until in silences],
            self._clock(),
        )
        self.engine.send()

    def add_handler(self, handler: AlertHandler) -> None:
        if not callable(handler):
            raise ConfigError(f"an alert handler must be callable with an Alert, got {handler!r}")
        self.dispatcher.add(handler)

    def remove_handler(self, handler: AlertHandler) -> bool:
        return self.dispatcher.remove(handler)

    def forget_resolved(self, before: float) -> int:
        """Forget alerts resolved before unix time ``before``; how many."""
        return self.engine.forget_resolved(before)

    # -- restore (called by the store on start) ----------------------------------------

    def restore_collector(
        self,
        collector_type: str,
        *,
        now: float,
        buckets: Iterable[tuple[int, int, int, float, int, int]],
        first_seen: float | None,
        last_success: float | None,
        last_failure: float | None,
        consecutive_failures: int,
        total_executions: int,
        runs: Sequence[FinishedRun],
    ) -> bool:
        """Rebuild a collector's health state and recent history from a store.

        Returns False when it was not restored (it already ran here, or
        ``max_collectors`` is reached: restoring never evicts). Call under ``lock``.
        Stored times are wall times: their age is the wall clock's now, then
        grows monotonically.
        """
        if collector_type not in self.roster and self.roster.full:
            return False
        first, ok, failed, skipped = self._clock.from_wall(
            first_seen, last_success, last_failure, open_overlap(runs)
        )
        if not self.evaluator.restore(
            collector_type,
            now=now,
            buckets=list(buckets),
            first_seen=first,
            last_success=ok,
            last_failure=failed,
            consecutive_failures=consecutive_failures,
            total_executions=total_executions,
            skipped_at=skipped,
        ):
            return False
        self.roster.seen(collector_type, consecutive_failures == 0)
        self._history.restore(runs)
        return True

    def baselines(self, written: dict[str, int]) -> dict[str, BaselineState]:
        """Baselines that learned since ``written`` (updated), times on the wall clock."""
        self._ingest.drain()  # runs waiting in a batch have not been learned from yet
        shift = self._clock.shift()
        return {
            name: _shifted(baseline, -shift)
            for name, baseline in self.evaluator.baselines(written).items()
        }

    def adopt_baselines(self, stored: Mapping[str, BaselineState], *, blend: bool) -> list[str]:
        """Take stored baselines (times on the wall clock): at start, or other processes'.

        Returns the collectors whose baseline moved."""
        shift = self._clock.shift()
        return self.evaluator.adopt_baselines(
            {name: _shifted(baseline, shift) for name, baseline in stored.items()}, blend=blend
        )

    def restore_alerts(
        self, alerts: Iterable[tuple[Alert, AlertLevel | None]]
    ) -> tuple[int, list[str]]:
        """Take back a store's active alerts (see `AlertEngine.restore`)."""
        return self.engine.restore(alerts)

    # -- health snapshots for the consumer ------------------------------------------------

    def publish_health(self, names: Iterable[str] | None = None) -> None:
        """Hand the consumer the collectors whose health status or score changed."""
        now = self._clock()
        changed: dict[str, tuple[str, float | None]] = {}
        for name in sorted(self.evaluator.collector_types()) if names is None else names:
            health = self.evaluator.health(name, now, None, self.schedules.conditions(name, now))
            if health is None:
                continue
            snapshot = (health.status.value, health.health_score)
            if self._published.get(name) != snapshot:
                self._published[name] = changed[name] = snapshot
        if changed:
            self._consumer.health_changed(changed)

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Process waiting runs, publish health, and wait until handlers got every
        queued notification."""
        with self.lock:
            self._ingest.drain()
            self.publish_health()
        self.engine.send(wait=True)  # all of it submitted before waiting for the handlers
        return self.dispatcher.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the watchdog, deliver queued notifications (bounded), close handlers."""
        deadline = time.monotonic() + timeout
        self._watchdog.stop(min(timeout, 1.0))
        with guarded("RunPipeline.shutdown"):  # shutdown goes on
            self.engine.send(wait=True)
            self.dispatcher.shutdown(max(0.0, deadline - time.monotonic()))

    def export(self) -> dict[str, Any]:
        return {
            "health": {name: h.to_dict() for name, h in self.health().items()},
            "alerts": [a.to_dict() for a in self.alerts(active_only=False)],
            "expectations": {
                name: self.schedules.describe(name) for name in self.schedules.collector_types()
            },
        }


def _shifted(baseline: BaselineState, shift: float) -> BaselineState:
    at = baseline.last_records_at
    return baseline if at is None or not shift else replace(baseline, last_records_at=at + shift)
