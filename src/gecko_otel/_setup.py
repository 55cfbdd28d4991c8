"""``setup()``: one call from nothing to a working Monitor, honouring ``OTEL_*``."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from gecko_otel import _state
from gecko_otel._capture.instruments import metric_views
from gecko_otel._checks import seconds
from gecko_otel._config import MonitorConfig
from gecko_otel._guard import finish_within
from gecko_otel._monitor import Monitor
from gecko_otel._worker import untraced
from gecko_otel.errors import ConfigError
from gecko_otel.typing import AlertHandler

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger("gecko_otel.setup")

_PROTOCOLS = ("grpc", "http/protobuf")


def setup(
    service_name: str | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    config: MonitorConfig | None = None,
    alert_handlers: Iterable[AlertHandler] = (),
    database_url: str | Engine | None = None,
    metric_readers: Iterable[MetricReader] = (),
) -> Monitor:
    """Create the global Monitor (or return the one that exists).

    Providers are chosen in this order: the ones you pass; SDK providers
    already installed globally; new SDK providers with a Resource from
    ``service_name`` and the ``OTEL_*`` variables (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``, sampler variables), with OTLP exporters
    when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or a per-signal endpoint is set,
    installed globally. The Monitor shuts down what it created at exit.

    Args:
        service_name: ``service.name`` of new providers (wins over
            ``OTEL_SERVICE_NAME``, as in ``Resource.create``).
        tracer_provider: Use this provider (never shut down by gecko-otel).
        meter_provider: Use this provider (never shut down by gecko-otel).
        config: Monitor configuration; ``MonitorConfig.from_env()`` by default.
        alert_handlers: Alert handlers (any callable taking an Alert).
        database_url: The store, e.g. ``"sqlite:///gecko_otel.db"`` or
            ``"postgresql+psycopg://user@host/db"``, or a SQLAlchemy
            ``Engine`` you own; wins over ``config.database_url`` and
            ``GECKO_OTEL_DATABASE_URL``. Memory only when none is set.
        metric_readers: More readers for the MeterProvider setup() creates,
            beside the OTLP exporter and the store's: for example
            ``PrometheusMetricReader()`` (the ``prometheus`` extra), whose
            metrics ``monitor.serve_http()`` serves on ``/metrics``.

    Returns:
        The global Monitor. A second call returns the first Monitor and logs a
        warning if it was given arguments.

    Raises:
        ConfigError: A ``GECKO_OTEL_*`` or OTLP variable is invalid, or the
            database URL is unusable (see `Monitor`).
    """
    with _state.lock:
        existing = installed()
        if existing is not None:
            if (
                service_name
                or tracer_provider
                or meter_provider
                or config
                or alert_handlers
                or database_url is not None
                or metric_readers
            ):
                logger.warning(
                    "gecko_otel.setup() was already called; returning the existing Monitor "
                    "and ignoring the new arguments (call monitor.shutdown() first to replace it)"
                )
            return existing
        config = config if config is not None else MonitorConfig.from_env()
        if isinstance(database_url, str):
            config = config.replace(database_url=database_url)
        database = database_url if database_url is not None else config.database_url
        if database is not None:
            from gecko_otel.store.engine import preflight  # noqa: PLC0415

            with untraced():  # our own queries, not spans for the user's backend
                preflight(database)  # a refused database fails before any provider exists
        alert_handlers = list(alert_handlers)
        for handler in alert_handlers:  # before any provider is created or installed
            if not callable(handler):
                raise ConfigError(
                    f"an alert handler must be callable with an Alert, got {handler!r}"
                )
        owned: list[Any] = []
        if tracer_provider is None:
            tracer_provider = _global_tracer_provider() or _new_tracer_provider(service_name, owned)
        store_metrics = None
        readers = list(metric_readers)
        if readers and (meter_provider is not None or _global_meter_provider() is not None):
            raise ConfigError(
                "metric_readers go on a MeterProvider setup() creates, and one exists "
                "already (passed as meter_provider, or installed globally): add the "
                "readers to that MeterProvider when you create it"
            )
        if meter_provider is None:
            meter_provider = _global_meter_provider()
            if meter_provider is None:
                extra: list[Any] = readers
                if database_url is not None or config.database_url is not None:
                    from gecko_otel.store.metrics import store_metric_reader  # noqa: PLC0415

                    reader, store_metrics = store_metric_reader(
                        seconds(config.metrics_export_interval)
                    )
                    extra.append(reader)
                meter_provider = _new_meter_provider(
                    service_name, tracer_provider, owned, config, extra
                )
        monitor = Monitor(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            config=config,
            alert_handlers=alert_handlers,
            owned_providers=owned,
            database=database,
            metric_exporter=store_metrics,
            on_shutdown=functools.partial(_state.shutting_down, providers=tuple(owned)),
        )
        _state.install(monitor)
    ref = weakref.ref(monitor)

    def shutdown_at_exit() -> None:
        current = ref()
        if current is not None:
            current.shutdown()

    atexit.register(shutdown_at_exit)
    if monitor.config.handle_sigterm:
        flush_on_sigterm()
    return monitor


def flush_on_sigterm() -> None:
    """On SIGTERM, shut the Monitor down (bounded), then end as the process would have.

    systemd, ``docker stop`` and Kubernetes stop a process with SIGTERM, whose
    default action ends it at once: no ``atexit`` hook runs, so queued runs
    and spans were lost uncounted. The handler shuts the installed Monitor
    down within ``shutdown_timeout``, then hands the signal on: to the handler
    that was installed before (it runs as before), or, with the default
    action, by restoring it and sending SIGTERM again, so the exit status is
    the same as without gecko-otel. Only from the main thread, and not when
    SIGTERM is ignored or handled outside Python.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous is signal.SIG_IGN or previous in _sigterm_handlers:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        current = installed()  # the Monitor set up last, not the one that installed this
        if current is not None and current.config.handle_sigterm:
            # On a helper thread, waited for within the deadline: the handler runs
            # on the main thread wherever it was interrupted, perhaps holding a lock
            # the shutdown needs, and must not wait for it forever.
            deadline = seconds(current.config.shutdown_timeout) + 1.0
            if not finish_within(current.shutdown, deadline):
                logger.warning(
                    "gecko_otel: the SIGTERM shutdown did not finish within %.1f s (the "
                    "signal landed where a lock it needs was held, or the database "
                    "stalled); what it had not stored is lost",
                    deadline,
                )
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    _sigterm_handlers.append(on_sigterm)
    signal.signal(signal.SIGTERM, on_sigterm)


#: The SIGTERM handlers setup() installed (a later setup() does not chain a second).
_sigterm_handlers: list[Callable[[int, FrameType | None], None]] = []


def get_monitor() -> Monitor | None:
    """The Monitor installed by `setup`, or ``None``."""
    return installed()


def installed() -> Monitor | None:
    """The installed Monitor (only Monitors are ever installed)."""
    return cast("Monitor | None", _state.monitor())


def _global_tracer_provider() -> SDKTracerProvider | None:
    current = trace.get_tracer_provider()
    if isinstance(current, SDKTracerProvider) and not _state.is_retired(current):
        return current
    return None


def _global_meter_provider() -> SDKMeterProvider | None:
    current = metrics.get_meter_provider()
    if isinstance(current, SDKMeterProvider) and not _state.is_retired(current):
        return current
    return None


def _resource(service_name: str | None) -> Resource:
    return Resource.create({SERVICE_NAME: service_name} if service_name else {})


def _new_tracer_provider(service_name: str | None, owned: list[Any]) -> SDKTracerProvider:
    # Shut down by the Monitor within its deadline, not by the SDK's own
    # unbounded exit hook.
    provider = SDKTracerProvider(resource=_resource(service_name), shutdown_on_exit=False)
    exporter = _span_exporter(os.environ)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _install_global(trace.set_tracer_provider, trace.get_tracer_provider, provider)
    owned.append(provider)
    return provider


def _new_meter_provider(
    service_name: str | None,
    tracer_provider: trace.TracerProvider,
    owned: list[Any],
    config: MonitorConfig,
    extra_readers: list[Any] | None = None,
) -> SDKMeterProvider:
    resource = getattr(tracer_provider, "resource", None) or _resource(service_name)
    exporter = _metric_exporter(os.environ)
    readers = [PeriodicExportingMetricReader(exporter)] if exporter is not None else []
    readers.extend(extra_readers or ())
    provider = SDKMeterProvider(
        resource=resource,
        metric_readers=readers,
        shutdown_on_exit=False,
        views=metric_views(config),
    )
    _install_global(metrics.set_meter_provider, metrics.get_meter_provider, provider)
    owned.append(provider)
    return provider


def _install_global(set_provider: Any, get_provider: Any, provider: Any) -> None:
    # The API refuses (with a warning) to replace a provider that is already
    # set; only a proxy means "nothing set yet".
    if "Proxy" in type(get_provider()).__name__:
        set_provider(provider)


def _signal_protocol(env: Mapping[str, str], signal: str) -> str | None:
    """The OTLP protocol for ``signal``, or None when no endpoint is configured."""
    exporter_var = f"OTEL_{signal}_EXPORTER"
    if env.get(exporter_var, "").strip().lower() == "none":
        return None
    if not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    ):
        return None
    variable = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    if not env.get(variable):
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = (env.get(variable) or "grpc").strip().lower()
    if protocol not in _PROTOCOLS:
        raise ConfigError(
            f"{variable}={protocol!r} is not supported; use 'grpc' or 'http/protobuf'"
        )
    return protocol


def _span_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    protocol = _signal_protocol(env, "TRACES")
    if protocol is None:
        return None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    http = _import_http("trace_exporter")
    return http.OTLPSpanExporter()  # type: ignore[no-any-return]


def _metric_exporter(env: Mapping[str, str]) -> MetricExporter | None:
    protocol = _signal_protocol(env, "METRICS")
    if protocol is None:
        return None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter,
        )

        return OTLPMetricExporter()
    http = _import_http("metric_exporter")
    return http.OTLPMetricExporter()  # type: ignore[no-any-return]


def _import_http(module: str) -> Any:
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{module}")
    except ImportError:
        raise ConfigError(
            "OTLP protocol http/protobuf needs the HTTP exporter: pip install 'gecko-otel[http]'"
        ) from None
