"""Health evaluation and alerting as one component of the Monitor.

:class:`Alerting` owns the health evaluator, the alert engine, the handler
dispatcher and the watchdog, and exposes what the Monitor answers about
health and alerts. Per finished run it does O(1) work on the run's thread
(``observe``); everything that waits on a clock runs on the watchdog thread,
and handlers run on the dispatcher's threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from gecko_otel._alerts.dispatcher import AlertDispatcher
from gecko_otel._alerts.engine import AlertEngine
from gecko_otel._alerts.values import Alert, AlertLevel
from gecko_otel._config import MonitorConfig, check_seconds, seconds
from gecko_otel._guard import at_fork_in_child, report_internal_error
from gecko_otel._health.expectations import Schedules
from gecko_otel._health.rules import BUCKETS, HealthEvaluator
from gecko_otel._health.values import (
    CollectionStatus,
    CollectorHealth,
    Condition,
    SystemHealth,
    worst,
)
from gecko_otel._health.watchdog import Watchdog
from gecko_otel._history.memory import History
from gecko_otel._history.records import FinishedRun
from gecko_otel.errors import ConfigError
from gecko_otel.typing import AlertHandler

Clock = Callable[[], float]


class Alerting:
    """Health, alerts, handlers and the watchdog of one Monitor.

    Args:
        config: Thresholds, cooldowns, timeouts.
        history: The Monitor's history (for p95 durations in the window).
        clock: Unix time in seconds; ``time.time`` by default. Tests pass a
            fake clock to move time without sleeping.
        handlers: Alert handlers to start with.
        watchdog: Whether to run the watchdog thread (tests that drive the
            clock by hand call :meth:`evaluate` instead).
    """

    def __init__(
        self,
        config: MonitorConfig,
        history: History,
        *,
        clock: Clock | None = None,
        handlers: Iterable[AlertHandler] = (),
        watchdog: bool = True,
    ) -> None:
        self._config = config
        self._history = history
        self._clock = clock or time.time
        self.evaluator = HealthEvaluator(config)
        self.dispatcher = AlertDispatcher(
            timeout=seconds(config.handler_timeout), queue_size=config.alert_queue_size
        )
        self.engine = AlertEngine(self.evaluator, self.dispatcher.submit)
        self.schedules = Schedules()
        for handler in handlers:
            self.add_handler(handler)
        self._p95: dict[str, tuple[int, int, float | None]] = {}
        # Collectors named in the configuration are watched from the start, so
        # one that never runs in this process still goes stale.
        started = self._clock()
        for name in config.collectors:
            self.evaluator.state(name, started)
        self._watchdog = Watchdog(self.evaluate, seconds(config.watchdog_interval))
        self._use_watchdog = watchdog
        #: Serialises run processing with evaluations: the run ingest drains
        #: under it and the watchdog's tick evaluates each collector under
        #: it, so a tick never applies conditions computed before a run that
        #: was processed in the meantime.
        self.lock = threading.RLock()
        #: Called (under ``lock``) first by every evaluation and health query:
        #: the Monitor drains the runs waiting in its ingest here.
        self.before_evaluation: Callable[[], None] = _nothing
        at_fork_in_child(self, "_reset_lock")
        if watchdog:
            self._watchdog.ensure_running()

    def _reset_lock(self) -> None:
        self.lock = threading.RLock()

    def keep_watchdog_running(self) -> None:
        """Restart the watchdog thread if this process lost it (after fork())."""
        if self._use_watchdog:
            self._watchdog.ensure_running()

    # -- per run -------------------------------------------------------------

    def now(self) -> float:
        """The clock's current reading (unix seconds)."""
        return self._clock()

    def observe(self, record: FinishedRun, ended: float) -> None:
        """Count a run that ended at unix time ``ended`` and update its alerts. O(1).

        Called under ``lock`` by the run ingest.
        """
        collector_type = record.collector_type
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
        if conditions is not None:
            self.engine.update(collector_type, conditions, ended, by_run=True)

    def run_started(self, collector_type: str, execution_id: str) -> None:
        """A run of a collector with an expectation started (on the run's thread)."""
        with self.lock:  # serialised with ticks, so none applies a stale missed_run after it
            now = self._clock()
            self.schedules.started(collector_type, execution_id, now)
            if self.engine.has_active(collector_type):  # e.g. missed_run: resolve it now
                self.before_evaluation()
                self.engine.update(
                    collector_type, self._conditions(collector_type, now), now, by_run=False
                )

    def evaluate_one(self, collector_type: str) -> None:
        """Evaluate one collector's rules now (after its expectation changed)."""
        with self.lock:
            self.before_evaluation()
            now = self._clock()
            self.engine.update(
                collector_type, self._conditions(collector_type, now), now, by_run=False
            )

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
                self.before_evaluation()
                conditions = self._conditions(collector_type, now)
                self.engine.update(collector_type, conditions, now, by_run=False)
        with self.lock:
            self.engine.tick(now)

    # -- health ------------------------------------------------------------------

    def health(self, collector_type: str | None = None) -> dict[str, CollectorHealth]:
        """Health per collector (one, or all known), sorted by collector type."""
        with self.lock:
            self.before_evaluation()
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

    def system_health(self, dropped: dict[str, int]) -> SystemHealth:
        """All collectors at a glance; ``dropped`` adds the Monitor's own counters."""
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
            dropped={**dropped, **self.dispatcher.counts()},
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

    def acknowledge(self, alert_id: str) -> bool:
        return self.engine.acknowledge(alert_id, self._clock())

    def resolve(self, alert_id: str) -> bool:
        return self.engine.resolve(alert_id, self._clock())

    def suppress(
        self, collector_type: str, duration: timedelta | float, rule: str | None
    ) -> datetime:
        if not isinstance(collector_type, str) or not collector_type.strip():
            raise ConfigError(f"collector_type must be a non-empty string, got {collector_type!r}")
        if rule is not None and (not isinstance(rule, str) or not rule):
            raise ConfigError(f"rule must be a rule name or None, got {rule!r}")
        length = check_seconds("duration", duration)
        now = self._clock()
        self.engine.suppress(collector_type, rule, now + length)
        return datetime.fromtimestamp(now + length, timezone.utc)

    def unsuppress(self, collector_type: str, rule: str | None) -> int:
        return self.engine.unsuppress(collector_type, rule, self._clock())

    def add_handler(self, handler: AlertHandler) -> None:
        if not callable(handler):
            raise ConfigError(f"an alert handler must be callable with an Alert, got {handler!r}")
        self.dispatcher.add(handler)

    def remove_handler(self, handler: AlertHandler) -> bool:
        return self.dispatcher.remove(handler)

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until handlers got every queued notification."""
        return self.dispatcher.flush(timeout)

    def shutdown(self) -> None:
        self._watchdog.stop()
        try:
            self.dispatcher.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutdown goes on
            report_internal_error("Alerting.shutdown", exc)

    def export(self) -> dict[str, Any]:
        return {
            "health": {name: h.to_dict() for name, h in self.health().items()},
            "alerts": [a.to_dict() for a in self.alerts(active_only=False)],
            "expectations": {
                name: self.schedules.describe(name) for name in self.schedules.collector_types()
            },
        }


def _nothing() -> None:
    return None
