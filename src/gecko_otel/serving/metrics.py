"""``/metrics``: a prometheus_client registry in the Prometheus text format.

The gecko-otel metrics reach a registry through OpenTelemetry's
``PrometheusMetricReader`` on the MeterProvider (``setup(metric_readers=
[PrometheusMetricReader()])``), so the status server's port serves people
(``/``) and Prometheus (``/metrics``) alike. prometheus_client comes with
the ``prometheus`` extra; nothing here is imported without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from gecko_otel.errors import ConfigError

#: Renders the exposition: (body, content type).
Exposition = Callable[[], tuple[bytes, str]]

#: Why /metrics answers 404 when prometheus_client is not installed.
NOT_INSTALLED: Final = (
    "/metrics needs the prometheus extra: pip install 'gecko-otel[prometheus]', then "
    "setup(metric_readers=[PrometheusMetricReader()])"
)


def prometheus_exposition(registry: Any = None) -> Exposition:
    """The exposition of ``registry`` (prometheus_client's default registry when None).

    Raises:
        ConfigError: prometheus_client is not installed (the message says how).
    """
    try:
        from prometheus_client import (  # noqa: PLC0415 - the optional prometheus extra
            CONTENT_TYPE_LATEST,
            REGISTRY,
            generate_latest,
        )
    except ImportError:
        raise ConfigError(NOT_INSTALLED) from None
    chosen = REGISTRY if registry is None else registry
    if not callable(getattr(chosen, "collect", None)):
        raise ConfigError(
            f"metrics must be True, False or a prometheus_client CollectorRegistry, got {chosen!r}"
        )

    def render() -> tuple[bytes, str]:
        return generate_latest(chosen), CONTENT_TYPE_LATEST

    return render


def choose(metrics: Any) -> tuple[Exposition | None, str]:
    """What ``serve_http(metrics=...)`` means: the exposition, or None and why not.

    True: the default registry when prometheus_client is installed; False:
    no ``/metrics``; a registry: that one.
    """
    if metrics is False:
        return None, "/metrics is turned off on this server (serve_http(metrics=False))"
    if metrics is True:
        try:
            return prometheus_exposition(), ""
        except ConfigError as exc:
            return None, str(exc)
    return prometheus_exposition(metrics), ""
