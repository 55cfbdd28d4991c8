"""The process-wide Monitor that decorators use when none is passed to them."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from gecko_otel.config import MonitorConfig

if TYPE_CHECKING:
    from gecko_otel.instrumentation import Instrumentation
    from gecko_otel.monitor import Monitor

_lock = threading.RLock()
_monitor: Monitor | None = None
_default: Instrumentation | None = None

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


def install(new: Monitor | None) -> Monitor | None:
    """Make ``new`` the global Monitor; return the previous one."""
    global _monitor
    with _lock:
        previous, _monitor = _monitor, new
    return previous


def uninstall(old: Monitor) -> None:
    """Remove ``old`` if it is the global Monitor."""
    global _monitor  # noqa: PLW0603
    with _lock:
        if _monitor is old:
            _monitor = None


def instrumentation() -> Instrumentation:
    """The global Monitor's instrumentation, or one on the global OTel providers.

    Without ``setup()`` runs still produce spans and duration metrics through
    whatever providers the application installed globally (nothing, until it
    installs some); they just have no history.
    """
    current = _monitor
    if current is not None:
        return current.instrumentation
    default = _default
    if default is None:
        default = _build_default()
    return default


def _build_default() -> Instrumentation:
    global _default  # noqa: PLW0603
    from gecko_otel.instrumentation import Instrumentation  # noqa: PLC0415 - import cycle

    with _lock:
        if _default is None:
            _default = Instrumentation(
                trace.get_tracer_provider(), metrics.get_meter_provider(), MonitorConfig()
            )
        return _default
