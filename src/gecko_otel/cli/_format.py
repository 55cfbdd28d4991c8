"""Short renderings for tables: ages, durations, rates, ids, styles."""

from __future__ import annotations

from datetime import datetime
from typing import Final

#: Styles of health statuses, run statuses and alert levels (shown on a terminal only).
STYLES: Final = {
    "critical": "bold red",
    "error": "red",
    "warning": "yellow",
    "healthy": "green",
    "unknown": "dim",
    "info": "cyan",
    "success": "green",
    "partial": "yellow",
    "failure": "red",
    "timeout": "red",
    "cancelled": "magenta",
    "missed": "yellow",
    "skipped": "dim",
    "firing": "bold",
    "acknowledged": "dim",
    "resolved": "green",
}


def styled(value: str | None) -> tuple[str, str]:
    """A table cell with the style of its value."""
    text = value or "-"
    return text, STYLES.get(text, "")


def tinted(text: str, value: object) -> tuple[str, str]:
    """``text`` in the style of ``value`` (a status or level; None: unstyled)."""
    return text, STYLES.get(str(value), "") if value is not None else ""


def age(moment: datetime | None, now: datetime) -> str:
    """How long ago, in one unit: ``45s``, ``12m``, ``3h``, ``2d`` (``-`` for never)."""
    if moment is None:
        return "-"
    seconds = max(0.0, (now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def span(seconds: float | None) -> str:
    """A duration in a few characters: ``15us``, ``120ms``, ``4.50s``, ``2m05s``, ``1h10m``."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def percent(value: float | None) -> str:
    """``97.5%`` (``-`` when there is nothing to rate)."""
    return "-" if value is None else f"{value:.1f}%"


def moment(value: datetime | None) -> str:
    """A UTC time as ``MM-DD HH:MM:SS`` for narrow tables."""
    return "-" if value is None else value.strftime("%m-%d %H:%M:%S")


def short_id(value: str) -> str:
    """The last 10 characters of an id: ids begin with their time, so the end is
    what tells them apart (``show``, ``ack`` and ``resolve`` accept it)."""
    return value[-10:]


def count(value: int) -> str:
    """An integer with thousands separators."""
    return f"{value:,}"
