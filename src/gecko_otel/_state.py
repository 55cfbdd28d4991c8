"""The process-wide Monitor that decorators use when none is passed to them.

It sits below the capture layer: it knows a Monitor only as a
`MonitorHandle`, and `gecko_otel.testing.reset` clears it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import tzinfo

    from gecko_otel._health.expectations import Expectation
    from gecko_otel.typing import MonitorHandle as Monitor

lock = threading.RLock()
_monitor: Monitor | None = None

#: Providers a Monitor created and has shut down. The OpenTelemetry API keeps
#: a global provider installed for good, so a later setup() must recognise
#: these and build fresh ones instead of reusing a dead provider.
_retired: weakref.WeakSet[Any] = weakref.WeakSet()


def retire(provider: Any) -> None:
    """Note that ``provider`` was shut down by the Monitor that created it."""
    _retired.add(provider)


def is_retired(provider: Any) -> bool:
    """Whether a Monitor has shut ``provider`` down."""
    return provider in _retired


def monitor() -> Monitor | None:
    """The installed Monitor, if any."""
    return _monitor


def install(new: Monitor | None, *, arm: bool = True) -> Monitor | None:
    """Make ``new`` the global Monitor; return the previous one.

    With ``arm``, the new Monitor arms the schedule expectations declared by
    decorators (not when a previous Monitor is merely put back).
    """
    global _monitor
    with lock:
        previous, _monitor = _monitor, new
        declared = list(_declared.items())
    if new is not None and arm:
        for collector_type, (expectation, tz) in declared:
            arm_expectation(new, collector_type, expectation, tz)
    return previous


#: Expectations declared by ``@collection(every=..., cron=...)``, armed in
#: every Monitor installed globally (the one there now, and later ones).
_declared: dict[str, tuple[Expectation, tzinfo | None]] = {}


def declare(collector_type: str, expectation: Expectation, tz: tzinfo | None) -> None:
    """Record a decorator's expectation and arm it in the global Monitor, if any."""
    with lock:
        _declared[collector_type] = (expectation, tz)
        current = _monitor
    if current is not None:
        arm_expectation(current, collector_type, expectation, tz)


def arm_expectation(
    target: Monitor, collector_type: str, expectation: Expectation, tz: tzinfo | None
) -> None:
    """Declare a decorator's expectation on ``target``."""
    target.expect(
        collector_type,
        every=expectation.every,
        cron=expectation.cron,
        grace=expectation.grace,
        max_runtime=expectation.max_runtime,
        timezone=tz,
    )


def shutting_down(old: Monitor, providers: Iterable[Any] = ()) -> None:
    """``old`` is shutting down: uninstall it, and note ``providers`` (its own) as retired."""
    uninstall(old)
    for provider in providers:
        retire(provider)


def uninstall(old: Monitor) -> None:
    """Remove ``old`` if it is the global Monitor."""
    global _monitor  # noqa: PLW0603
    with lock:
        if _monitor is old:
            _monitor = None


def installed_instrumentation() -> Any:
    """The installed Monitor's `Instrumentation`, or None without one."""
    current = _monitor
    return current.instrumentation if current is not None else None


def snapshot() -> tuple[Monitor | None, dict[str, tuple[Expectation, tzinfo | None]]]:
    """The installed Monitor and the declared expectations, for `restore`."""
    with lock:
        return _monitor, dict(_declared)


def restore(saved: tuple[Monitor | None, dict[str, tuple[Expectation, tzinfo | None]]]) -> None:
    """Put back what `snapshot` saw (the Monitor is not armed again)."""
    monitor_, declared = saved
    with lock:
        _declared.clear()
        _declared.update(declared)
    install(monitor_, arm=False)


def reset() -> None:
    """Uninstall the global Monitor and forget declared expectations and retired providers."""
    global _monitor  # noqa: PLW0603
    with lock:
        _monitor = None
        _declared.clear()
        _retired.clear()
