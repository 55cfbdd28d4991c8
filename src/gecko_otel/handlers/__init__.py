"""Built-in alert handlers, and loading handlers by name.

Handlers are found by name through the ``gecko_otel.alert_handlers``
entry-point group, where gecko-otel registers its own (``logging``,
``webhook``, ``alertmanager``) and other packages can add theirs::

    [project.entry-points."gecko_otel.alert_handlers"]
    slack = "my_package.alerting:SlackAlertHandler"

An entry point names a factory: a class or function whose keyword
arguments configure the handler and which returns an
`AlertHandler`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any, Final

from gecko_otel.errors import AlertDeliveryError, ConfigError
from gecko_otel.handlers.alertmanager import AlertmanagerAlertHandler
from gecko_otel.handlers.logging import LoggingAlertHandler
from gecko_otel.handlers.webhook import WebhookAlertHandler
from gecko_otel.typing import AlertHandler

__all__ = [
    "ENTRY_POINT_GROUP",
    "AlertDeliveryError",
    "AlertmanagerAlertHandler",
    "LoggingAlertHandler",
    "WebhookAlertHandler",
    "available_alert_handlers",
    "load_alert_handler",
]

ENTRY_POINT_GROUP: Final = "gecko_otel.alert_handlers"

#: The built-in factories, used when the package metadata does not list them
#: (a source tree on ``sys.path`` that was never installed).
_BUILTINS: Final[dict[str, Callable[..., AlertHandler]]] = {
    "alertmanager": AlertmanagerAlertHandler,
    "logging": LoggingAlertHandler,
    "webhook": WebhookAlertHandler,
}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        # The first distribution on sys.path wins, as for imports.
        found.setdefault(entry_point.name, entry_point)
    return found


def available_alert_handlers() -> list[str]:
    """The names `load_alert_handler` accepts, sorted."""
    return sorted(_entry_points().keys() | _BUILTINS.keys())


def load_alert_handler(name: str, /, **kwargs: Any) -> AlertHandler:
    """Build the alert handler registered as ``name``, configured by ``kwargs``.

    ``load_alert_handler("webhook", url="https://example.com/hook")`` is
    ``WebhookAlertHandler(url="https://example.com/hook")``.

    Threading: call it at configuration time; it imports modules.

    Raises:
        ConfigError: For an unknown name (the message lists the available
            ones), an entry point that cannot be imported, arguments the
            factory does not take, or a factory that returns something that
            is not callable. The factory's own ``ConfigError`` passes through.
    """
    entry_points = _entry_points()
    factory: Callable[..., object]
    if name in entry_points:
        entry_point = entry_points[name]
        try:
            factory = entry_point.load()
        except Exception as exc:
            raise ConfigError(
                f"alert handler {name!r} ({entry_point.value}) could not be loaded: {exc!r}"
            ) from exc
    elif name in _BUILTINS:
        factory = _BUILTINS[name]
    else:
        available = ", ".join(available_alert_handlers())
        raise ConfigError(f"unknown alert handler {name!r}; available: {available}")
    if not callable(factory):
        raise ConfigError(f"alert handler {name!r} is registered as {factory!r}, not a factory")
    try:
        handler = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"alert handler {name!r}: {exc}") from exc
    if not isinstance(handler, AlertHandler):
        raise ConfigError(
            f"alert handler {name!r}: its factory returned {type(handler).__name__!r}, "
            "which is not callable"
        )
    return handler
