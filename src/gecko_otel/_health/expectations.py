"""Schedule expectations: a dead man's switch for collectors, and hung-run detection.

A collector declared with ``every=`` or ``cron=`` (on ``@collection`` or
``Monitor.expect``) is expected to *start* a run by each due time plus
``grace``; if none has started by then, the ``missed_run`` rule holds (alert
level error) until a run starts. The expectation is armed when it is
declared, so a collector that never runs at all is reported one interval
plus grace after the declaration (or after ``first_due`` plus grace, when
the first run is due at a known later time). With ``max_runtime=``, the
``runtime_exceeded`` rule (critical) holds while a run has been going for
longer than that, before it ends. Start lateness (``grace``) and run length
(``max_runtime``) are separate settings.

Both are time rules, checked by the watchdog on its clock (and when runs of
the collector start or end); they resolve as soon as they stop holding.

Times here are on the pipeline's clock, which advances with the monotonic
clock. A schedule's next time is wall time by nature (cron, and APScheduler,
compute it from the wall clock), so it is computed from a wall-clock reading
and kept as the interval from that reading: a run is due that long after the
previous one started, measured monotonically. A step of the wall clock alone
therefore never makes a run late (nor on time).

Cron expressions are parsed by ``cronsim`` (the ``cron`` extra) or, when
that is missing, by APScheduler's ``CronTrigger`` (the ``apscheduler``
extra); never by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Final

from gecko_otel._checks import check_collector_type, check_seconds
from gecko_otel._guard import at_fork_in_child
from gecko_otel._values.health import (
    RULE_MISSED_RUN,
    RULE_RUNTIME_EXCEEDED,
    AlertLevel,
    Condition,
    span_text,
)
from gecko_otel.errors import ConfigError

#: Grace when none is given: a run may start this late before it counts as missed.
DEFAULT_GRACE: Final = 60.0


def _cron_parser(expression: str, tz: tzinfo) -> Callable[[float], float]:
    """A function from unix time to the next fire time after it, for ``expression``."""
    try:
        import cronsim  # noqa: PLC0415 - optional dependency

        def next_with_cronsim(after: float) -> float:
            start = datetime.fromtimestamp(after, tz)
            return next(cronsim.CronSim(expression, start)).timestamp()

        next_with_cronsim(datetime.now(tz).timestamp())  # validate now, not at the first tick
        return next_with_cronsim
    except ImportError:
        pass
    except (cronsim.CronSimError, ValueError, OverflowError) as exc:  # they say what is wrong
        raise ConfigError(f"cron={expression!r} is not a valid cron expression: {exc}") from None
    try:
        from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415 - optional
    except ImportError:
        raise ConfigError(
            "cron= needs a cron parser: pip install 'gecko-otel[cron]' (or install APScheduler)"
        ) from None
    try:
        trigger = CronTrigger.from_crontab(expression, timezone=tz)
    except ValueError as exc:
        raise ConfigError(f"cron={expression!r} is not a valid cron expression: {exc}") from None

    def next_with_apscheduler(after: float) -> float:
        now = datetime.fromtimestamp(after, tz)
        fire = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        return fire.timestamp() if fire is not None else float("inf")

    return next_with_apscheduler


@dataclass(frozen=True, slots=True)
class Expectation:
    """When a collector should start its runs and how long they may take.

    Attributes:
        every: Seconds between starts, or None.
        cron: A cron expression for the starts, or None.
        grace: Seconds a start may be late before the run counts as missed.
        max_runtime: Seconds a run may take before ``runtime_exceeded``, or None.
    """

    every: float | None
    cron: str | None
    grace: float
    max_runtime: float | None

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r}"
        if self.every is not None:
            return f"every {span_text(self.every)}"
        return "no schedule"


def expectation_of(
    collector_type: str,
    *,
    every: timedelta | float | None,
    cron: str | None,
    grace: timedelta | float | None,
    max_runtime: timedelta | float | None,
    tz: object,
    first_due: datetime | None,
) -> tuple[Expectation, float | None]:
    """A validated expectation for ``Monitor.expect``, and its first due time (unix seconds).

    Raises:
        ConfigError: As ``Monitor.expect`` documents.
    """
    check_collector_type(collector_type)
    expectation = make_expectation(
        every=every, cron=cron, grace=grace, max_runtime=max_runtime, tz=tz
    )
    if first_due is None:
        return expectation, None
    if not isinstance(first_due, datetime) or first_due.tzinfo is None:
        raise ConfigError(f"first_due must be a timezone-aware datetime, got {first_due!r}")
    return expectation, first_due.timestamp()


def make_expectation(
    *,
    every: timedelta | float | None,
    cron: str | None,
    grace: timedelta | float | None,
    max_runtime: timedelta | float | None,
    tz: object = None,
) -> Expectation:
    """A validated Expectation; ConfigError names the argument that is wrong."""
    if tz is not None and not isinstance(tz, tzinfo):
        raise ConfigError(
            f"timezone must be a tzinfo such as zoneinfo.ZoneInfo('Europe/Paris'), got {tz!r}"
        )
    if tz is not None and cron is None:
        raise ConfigError("timezone= applies to cron= only; give cron= too, or drop timezone=")
    if every is not None and cron is not None:
        raise ConfigError("give every= or cron=, not both")
    if cron is not None and (not isinstance(cron, str) or not cron.strip()):
        raise ConfigError(f"cron must be a cron expression such as '*/5 * * * *', got {cron!r}")
    if every is None and cron is None and max_runtime is None:
        raise ConfigError("an expectation needs every=, cron= or max_runtime=")
    if cron is not None:
        _cron_parser(cron.strip(), tz or timezone.utc)  # a bad expression fails when declared
    return Expectation(
        every=check_seconds("every", every) if every is not None else None,
        cron=cron.strip() if cron is not None else None,
        grace=(
            check_seconds("grace", grace, allow_zero=True) if grace is not None else DEFAULT_GRACE
        ),
        max_runtime=check_seconds("max_runtime", max_runtime) if max_runtime is not None else None,
    )


def _next_due(next_after: Callable[[float], float], now: float, wall: float) -> float:
    """The schedule's next time after ``wall`` (the wall clock's reading at ``now``),
    on the pipeline's clock: as far after ``now`` as it is after ``wall``."""
    return next_after(now) if wall == now else now + (next_after(wall) - wall)


class _Entry:
    __slots__ = ("due", "expectation", "next_after", "running")

    def __init__(
        self,
        expectation: Expectation,
        next_after: Callable[[float], float] | None,
        now: float,
        wall: float,
    ) -> None:
        self.expectation = expectation
        self.next_after = next_after
        #: The next start is due by this time (+ grace); inf without a schedule.
        self.due = _next_due(next_after, now, wall) if next_after is not None else float("inf")
        #: execution id -> when the run started (the Monitor's clock)
        self.running: dict[str, float] = {}


class Schedules:
    """Expectations of every collector that declared one.

    Threading: ``started``/``ended`` run on the threads that start and end
    runs (a dict lookup when the collector has no expectation); the rest on
    any thread. One lock guards the entries.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        at_fork_in_child(self, "_after_fork")

    def _after_fork(self) -> None:
        # Expectations are per process: a forked child does not run what its
        # parent's scheduler runs, so it would report every one of them
        # missed. The child starts with none (and a fresh lock); it declares
        # what it runs itself (set up the Monitor after the fork).
        self._lock = threading.Lock()
        self._entries.clear()  # in place: `watched` hands out this very dict

    @property
    def watched(self) -> Container[str]:
        """The collectors with an expectation: a live view, cheap to test with ``in``."""
        return self._entries

    def expect(
        self,
        collector_type: str,
        expectation: Expectation,
        now: float,
        wall: float,
        *,
        tz: tzinfo | None = None,
        first_due: float | None = None,
    ) -> None:
        """Declare (or replace) the collector's expectation, armed from ``now``.

        ``wall`` is the wall clock's reading at ``now``. ``first_due`` overrides
        the first due time (a scheduler's next run time, wall time).
        """
        next_after: Callable[[float], float] | None = None
        if expectation.cron is not None:
            next_after = _cron_parser(expectation.cron, tz or timezone.utc)
        elif expectation.every is not None:
            every = expectation.every

            def next_after(after: float) -> float:
                return after + every

        entry = _Entry(expectation, next_after, now, wall)
        if first_due is not None and next_after is not None:
            entry.due = first_due if wall == now else now + (first_due - wall)
        with self._lock:
            previous = self._entries.get(collector_type)
            if previous is not None:
                entry.running = previous.running
            self._entries[collector_type] = entry

    def remove(self, collector_type: str) -> bool:
        """Withdraw the collector's expectation; False if it had none."""
        with self._lock:
            return self._entries.pop(collector_type, None) is not None

    def collector_types(self) -> list[str]:
        return sorted(self._entries)

    def expectation(self, collector_type: str) -> Expectation | None:
        entry = self._entries.get(collector_type)
        return entry.expectation if entry is not None else None

    def has(self, collector_type: str) -> bool:
        return collector_type in self._entries

    def started(self, collector_type: str, execution_id: str, now: float, wall: float) -> None:
        """A run of the collector started at ``now`` (``wall`` on the wall clock):
        the next start is due later."""
        entry = self._entries.get(collector_type)
        if entry is None:
            return
        with self._lock:
            entry.running[execution_id] = now
            if entry.next_after is not None:
                entry.due = _next_due(entry.next_after, now, wall)

    def ended(self, collector_type: str, execution_id: str) -> None:
        entry = self._entries.get(collector_type)
        if entry is not None:
            with self._lock:
                entry.running.pop(execution_id, None)

    def conditions(self, collector_type: str, now: float) -> list[Condition]:
        """The schedule rules that hold for the collector at ``now``."""
        entry = self._entries.get(collector_type)
        if entry is None:
            return []
        out: list[Condition] = []
        with self._lock:
            expectation = entry.expectation
            late = now - entry.due
            oldest = min(entry.running.values(), default=None)
        if late > expectation.grace:
            due = datetime.fromtimestamp(entry.due, timezone.utc)
            out.append(
                Condition(
                    rule=RULE_MISSED_RUN,
                    level=AlertLevel.ERROR,
                    message=f"no run started since {due:%Y-%m-%d %H:%M:%S} UTC "
                    f"({expectation.describe()}, grace {span_text(expectation.grace)})",
                    figures={
                        "due": due.isoformat(),
                        "seconds_late": round(late, 1),
                        "grace": expectation.grace,
                        "schedule": expectation.describe(),
                    },
                )
            )
        if expectation.max_runtime is not None and oldest is not None:
            running_for = now - oldest
            if running_for > expectation.max_runtime:
                out.append(
                    Condition(
                        rule=RULE_RUNTIME_EXCEEDED,
                        level=AlertLevel.CRITICAL,
                        message=f"a run has been going for {span_text(running_for)} "
                        f"(max_runtime {span_text(expectation.max_runtime)})",
                        figures={
                            "running_for": round(running_for, 1),
                            "max_runtime": expectation.max_runtime,
                        },
                    )
                )
        return out

    def describe(self, collector_type: str) -> dict[str, Any] | None:
        """The expectation and the next due time, for export."""
        entry = self._entries.get(collector_type)
        if entry is None:
            return None
        e = entry.expectation
        return {
            "every": e.every,
            "cron": e.cron,
            "grace": e.grace,
            "max_runtime": e.max_runtime,
            "next_due": datetime.fromtimestamp(entry.due, timezone.utc).isoformat()
            if entry.due != float("inf")
            else None,
        }
