"""Exceptions gecko-otel raises at configuration time.

Nothing here is ever raised into a collector's run: instrumentation errors are
logged and counted instead (see :mod:`gecko_otel._internal`).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to change."""
