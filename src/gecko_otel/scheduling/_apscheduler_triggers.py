"""What an APScheduler 3.x job's trigger says about when it runs.

Two readers use this: the span attributes of each run (``faas.cron``) and
the schedule expectation declared for each job (``Monitor.expect``). Only
triggers whose schedule can be stated exactly are translated: an
``IntervalTrigger`` becomes ``every=``, and a ``CronTrigger`` becomes a
standard five-field crontab when one means the same thing. Anything else
(date triggers, combined triggers, cron triggers with seconds, years, ISO
weeks, ``last``/``2nd fri`` days, or both a day of month and a day of week)
gets no expectation rather than a wrong one.

The crontab is written from the trigger's compiled fields, not parsed from
text; ``Monitor.expect`` then parses it with a real cron library. Weekday
numbers are converted: APScheduler 3.x counts Monday as 0, crontab counts
Sunday as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Any, Final

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.expressions import AllExpression, RangeExpression
from apscheduler.triggers.cron.fields import MAX_VALUES
from apscheduler.triggers.interval import IntervalTrigger

from gecko_otel._health.expectations import DEFAULT_GRACE

_CRONTAB_FIELDS: Final = ("minute", "hour", "day", "month")


@dataclass(frozen=True, slots=True)
class Schedule:
    """The arguments of ``Monitor.expect`` for one job.

    Attributes:
        every: The interval of an ``IntervalTrigger``, or None.
        cron: The crontab of a ``CronTrigger``, or None.
        grace: The job's ``misfire_grace_time`` (60 s when it has none),
            plus the trigger's jitter.
        timezone: The cron trigger's time zone, or None.
    """

    every: timedelta | None
    cron: str | None
    grace: timedelta
    timezone: tzinfo | None


def schedule_of(job: Any) -> Schedule | None:
    """The expectation for ``job``, or None when its trigger cannot be stated exactly."""
    trigger = job.trigger
    every: timedelta | None = None
    cron: str | None = None
    zone: tzinfo | None = None
    if isinstance(trigger, IntervalTrigger):
        every = trigger.interval
    elif isinstance(trigger, CronTrigger):
        cron = crontab_of(trigger)
        zone = trigger.timezone
    if every is None and cron is None:
        return None
    # A job with no misfire_grace_time may run however late: the default grace.
    misfire = getattr(job, "misfire_grace_time", None)
    grace = timedelta(seconds=misfire if misfire is not None else DEFAULT_GRACE)
    jitter = getattr(trigger, "jitter", None)
    if jitter:
        # A jittered run may start up to ``jitter`` seconds after its slot.
        grace += timedelta(seconds=jitter)
    return Schedule(every=every, cron=cron, grace=grace, timezone=zone)


def crontab_of(trigger: Any) -> str | None:
    """``trigger`` as a five-field crontab, or None if no crontab means the same.

    >>> crontab_of(CronTrigger(minute="*/5", hour="9-17", timezone="UTC"))
    '*/5 9-17 * * *'
    """
    if not isinstance(trigger, CronTrigger):
        return None
    fields = {field.name: field for field in trigger.fields}
    if str(fields["year"]) != "*" or str(fields["week"]) != "*" or str(fields["second"]) != "0":
        return None
    parts: list[str] = []
    for name in _CRONTAB_FIELDS:
        text = _field(fields[name].expressions, MAX_VALUES[name])
        if text is None:
            return None
        parts.append(text)
    weekdays = _weekdays(fields["day_of_week"].expressions)
    if weekdays is None:
        return None
    if parts[2] != "*" and weekdays != "*":
        # cron runs when the day of month OR the day of week matches;
        # APScheduler when both do. No crontab says "both".
        return None
    return " ".join([*parts, weekdays])


def _field(expressions: list[Any], maximum: int) -> str | None:
    texts: list[str] = []
    for expr in expressions:
        step = f"/{expr.step}" if expr.step else ""
        if type(expr) is AllExpression:
            texts.append(f"*{step}")
        elif isinstance(expr, RangeExpression):
            # Month names are compiled to numbers; ``5/10`` has no end in
            # APScheduler, and crontab wants one.
            last = expr.last if expr.last is not None else maximum
            span = str(expr.first) if last == expr.first and not step else f"{expr.first}-{last}"
            texts.append(span + step)
        else:  # "last", "2nd fri" and the like have no crontab form
            return None
    return ",".join(texts)


def _weekdays(expressions: list[Any]) -> str | None:
    days: set[int] = set()
    for expr in expressions:
        if type(expr) is AllExpression:
            days.update(range(0, 7, expr.step or 1))
        elif isinstance(expr, RangeExpression):
            last = expr.last if expr.last is not None else 6
            days.update(range(expr.first, last + 1, expr.step or 1))
        else:
            return None
    if days == set(range(7)):
        return "*"
    # APScheduler 3.x: Monday is 0. crontab: Sunday is 0.
    return ",".join(str(day) for day in sorted((day + 1) % 7 for day in days))
