"""Checks of user input shared by every module: durations, collector names.

One rule each, applied everywhere, so their messages read alike and say
what to change.
"""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta
from typing import Final

from gecko_otel.errors import ConfigError

#: Most records one run may report: larger counts are clamped to it (and
#: logged), so totals stay within the int64 that OTLP and the databases hold.
MAX_RECORDS_PER_RUN: Final = 2**40 - 1
#: The largest value an OTLP or SQL integer holds; running totals saturate there.
INT64_MAX: Final = 2**63 - 1

#: The longest duration accepted anywhere: 100 years, well under
#: ``threading.TIMEOUT_MAX``, so no wait can overflow and kill a thread.
MAX_DURATION: Final = 100 * 365.25 * 86400
#: The shortest interval that paces a background thread.
MIN_INTERVAL: Final = 0.01

_SURROGATE: Final = re.compile("[\ud800-\udfff]")

#: A duration as seconds or a ``timedelta``.
Duration = float | timedelta


def seconds(value: Duration) -> float:
    """A duration field's value as float seconds (they are stored normalised)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


#: Longest collector type: it names metric series, alerts and stored rows.
MAX_COLLECTOR_TYPE_LENGTH: Final = 255


def check_collector_type(collector_type: object) -> str:
    """``collector_type`` if it is a usable collector name: the one rule, applied everywhere.

    Raises:
        ConfigError: Not a non-empty string, a NUL character or a lone
            surrogate (neither can be encoded), or longer than
            ``MAX_COLLECTOR_TYPE_LENGTH``.
    """
    if not isinstance(collector_type, str) or not collector_type.strip():
        raise ConfigError(
            f"collector_type must be a non-empty string, got {collector_type!r}; "
            "pass a name such as 'pool_collector'"
        )
    if "\x00" in collector_type:
        raise ConfigError(
            f"collector_type {collector_type!r} contains a NUL character; remove it "
            "(databases and exporters cannot store it)"
        )
    if _SURROGATE.search(collector_type):
        raise ConfigError(
            f"collector_type {collector_type!r} contains a lone surrogate (from os.fsdecode of "
            "a file name that is not UTF-8?); it cannot be encoded: decode the name as UTF-8 "
            "with errors='replace'"
        )
    if len(collector_type) > MAX_COLLECTOR_TYPE_LENGTH:
        raise ConfigError(
            f"collector_type is {len(collector_type)} characters long; use at most "
            f"{MAX_COLLECTOR_TYPE_LENGTH} (it names metrics, alerts and stored rows): "
            f"{collector_type[:40]!r}..."
        )
    return collector_type


def check_seconds(
    name: str, value: object, *, allow_zero: bool = False, minimum: float = 0.0
) -> float:
    """Validate a duration given as seconds (a number) or a ``timedelta``.

    The duration check of the package: ``MonitorConfig``,
    ``CollectorThresholds`` and the alert handlers use it, so their messages
    read alike.

    Args:
        name: What the message calls the value, e.g. ``"MonitorConfig.handler_timeout"``
            or ``"WebhookAlertHandler: timeout"``.
        value: The value given.
        allow_zero: Accept ``0`` (for a wait that may be switched off, such
            as a backoff); otherwise the value must be more than 0.
        minimum: The least accepted value above 0, for the intervals that
            pace a background thread (shorter ones would busy-loop a CPU).

    Returns:
        The value as finite float seconds.

    Raises:
        ConfigError: ``value`` is not a number or a ``timedelta`` (booleans
            are refused), is not finite, is negative, or is 0 without
            ``allow_zero``. The message starts with ``name``.
    """
    if isinstance(value, timedelta):
        total = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        total = float(value)
    else:
        raise ConfigError(f"{name} must be seconds (a number) or a timedelta, got {value!r}")
    if not math.isfinite(total) or total < 0 or (total == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "positive"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")
    if total > MAX_DURATION:
        raise ConfigError(f"{name} must be at most {MAX_DURATION:.0f} s (100 years), got {value!r}")
    if 0 < total < minimum or (total == 0 and minimum and not allow_zero):
        raise ConfigError(
            f"{name} must be at least {minimum:g} s (shorter would busy-loop), got {value!r}"
        )
    return total


class Deadline:
    """A moment ``seconds`` from now, on the monotonic clock, to share out a time budget."""

    __slots__ = ("_at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self._at = time.monotonic() + self.seconds

    def left(self) -> float:
        """Seconds left (0 once it passed)."""
        return max(0.0, self._at - time.monotonic())


#: Seconds per unit of a duration written as text (`parse_duration`).
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_TEXT: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds from a duration written as ``90s``, ``30m``, ``2h``, ``7d`` or ``1w``.

    A bare number is seconds. Used for every duration typed by an operator
    (``--since 2h``, ``--older-than 30d``), so all accept the same forms.

    Raises:
        ConfigError: Not a positive duration in that form, or over
            `MAX_DURATION`; the message shows the forms accepted.
    """
    match = _DURATION_TEXT.fullmatch(text)
    value = float(match[1]) * _UNITS[match[2].lower() or "s"] if match else 0.0
    if not match or not 0 < value <= MAX_DURATION:
        raise ConfigError(
            f"{text!r} is not a duration; write a positive number with a unit: "
            "90s, 30m, 2h, 7d or 1w"
        )
    return value
