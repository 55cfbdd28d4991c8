"""``LoggingAlertHandler``: one log line per notification."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from gecko_otel._capture.metadata import MetadataSanitizer
from gecko_otel._values.alerts import Notification
from gecko_otel._values.health import AlertLevel
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from gecko_otel._values.alerts import Alert

__all__ = ["DEFAULT_LEVEL_MAP", "LoggingAlertHandler"]

#: Python logging level for each alert level.
DEFAULT_LEVEL_MAP: Final[Mapping[AlertLevel, int]] = {
    AlertLevel.INFO: logging.INFO,
    AlertLevel.WARNING: logging.WARNING,
    AlertLevel.ERROR: logging.ERROR,
    AlertLevel.CRITICAL: logging.CRITICAL,
}

#: Logger used when none is given.
DEFAULT_LOGGER: Final = "gecko_otel.alerts"

_ONE_LINE: Final = str.maketrans({"\r": "\\r", "\n": "\\n"})


def _logging_level(value: object) -> int:
    if isinstance(value, str):
        level = logging.getLevelName(value.upper())  # the name -> number direction
        if isinstance(level, int):
            return level
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(
        f"LoggingAlertHandler: level_map values must be logging levels "
        f"(an int or a name such as 'WARNING'), got {value!r}"
    )


class LoggingAlertHandler:
    """Logs every notification as one line, at a level that follows the alert's.

    The line reads, for example::

        alert firing [critical] collector=pool_collector rule=consecutive_failures:
        5 consecutive failures (alert_id=4f0c...)

    (on one line; line breaks inside the message are written as ``\\n``).
    The record is logged with ``%s`` arguments, so log processors see the
    template and the values separately. ``RESOLVED`` notifications log at
    INFO whatever the alert's level; the others at the level
    ``level_map`` gives for the alert's level (info, warning, error and
    critical map to the logging level of the same name by default).

    Threading contract: called on the dispatcher thread; does not block
    beyond what the logging handlers configured for the logger do, and is
    safe to call from several threads at once (``logging`` locks).

    Args:
        logger: A logger or a logger name; ``gecko_otel._values.alerts`` by default.
        level_map: Logging levels (numbers or names) for some or all alert
            levels (``AlertLevel`` or their names); the rest keep the default.

    Raises:
        ConfigError: For an unknown alert level or logging level in
            ``level_map``.
    """

    def __init__(
        self,
        logger: logging.Logger | str | None = None,
        *,
        level_map: Mapping[AlertLevel | str, int | str] | None = None,
    ) -> None:
        if logger is None or isinstance(logger, str):
            self._logger = logging.getLogger(logger or DEFAULT_LOGGER)
        elif isinstance(logger, logging.Logger):
            self._logger = logger
        else:
            raise ConfigError(
                f"LoggingAlertHandler: logger must be a logging.Logger or a name, got {logger!r}"
            )
        levels = dict(DEFAULT_LEVEL_MAP)
        for alert_level, log_level in (level_map or {}).items():
            levels[AlertLevel.parse(alert_level)] = _logging_level(log_level)
        self._levels = levels

    @property
    def logger(self) -> logging.Logger:
        """The logger lines go to."""
        return self._logger

    def level_for(self, alert: Alert) -> int:
        """The logging level `__call__` uses for ``alert``."""
        if alert.notification is Notification.RESOLVED:
            return logging.INFO
        return self._levels.get(alert.level, logging.WARNING)

    def __call__(self, alert: Alert, /) -> None:
        """Log ``alert`` as one line."""
        kind = alert.notification.value if alert.notification else alert.state.value
        message = MetadataSanitizer.mask(alert.message).translate(_ONE_LINE)
        self._logger.log(
            self.level_for(alert),
            "alert %s [%s] collector=%s rule=%s: %s (alert_id=%s)",
            kind,
            alert.level.value,
            alert.collector_type,
            alert.rule,
            message,
            alert.id,
        )
