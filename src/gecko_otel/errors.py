"""Exceptions gecko-otel raises.

`ConfigError` is raised at configuration time; `AlertDeliveryError`
by an alert handler on the dispatcher thread, which counts it. Neither is ever
raised into a collector's run: instrumentation errors are logged and counted
instead, and counted in `Monitor.system_health().dropped["internal_errors"]`.
"""

from __future__ import annotations

__all__ = ["AlertDeliveryError", "ConfigError"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to change."""


class AlertDeliveryError(RuntimeError):
    """A handler could not deliver a notification.

    The message names the URL with any password masked and says why the
    last attempt failed; it never contains credentials or header values.

    Attributes:
        status: The HTTP status of the last response, ``None`` when there
            was none (connection refused, timeout, ...).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
