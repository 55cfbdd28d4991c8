"""The extension points of gecko-otel, described as Protocols.

Anything that has the right shape works: a plain function is an alert
handler. Classes may add a ``close()`` that the Monitor calls on shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gecko_otel._alerts.values import Alert


@runtime_checkable
class AlertHandler(Protocol):
    """Receives alert notifications.

    Threading contract: called on a dispatcher thread of its own, never on a
    collector's thread, one notification at a time and in order. It may block
    on I/O; a call that takes longer than ``MonitorConfig.handler_timeout``
    is abandoned (left running on its thread) and a fresh thread carries on
    with the next notification, so only then can two calls overlap: a
    handler whose calls may hang should be thread-safe. Exceptions are
    logged and counted, never propagated.
    """

    def __call__(self, alert: Alert, /) -> object: ...


@runtime_checkable
class ClosableAlertHandler(AlertHandler, Protocol):
    """An alert handler with resources to release when the Monitor shuts down."""

    def close(self) -> None: ...
