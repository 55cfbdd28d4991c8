"""``@collection`` and ``track_collection``: turning calls into collection runs.

Work is split as Logfire's ``instrument`` splits it: at decoration time we
validate, pick the wrapper for the function's kind (sync, coroutine,
generator, async generator) and note what the span needs; per call we start
a `Run`, make it current, run the user's code, and
finish the run with whatever came out. The user's return value, exception
(same object, traceback intact), generator protocol and cancellation pass
through unchanged. If gecko-otel itself fails to start a run, the user's
code runs uninstrumented and the error is counted.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast, overload

from opentelemetry import context

from gecko_otel import _state
from gecko_otel._capture.instruments import Instrumentation
from gecko_otel._capture.run import Run
from gecko_otel._capture.wrappers import (
    Target,
    wrap_async_generator,
    wrap_coroutine,
    wrap_function,
    wrap_generator,
)
from gecko_otel._checks import MAX_COLLECTOR_TYPE_LENGTH, check_collector_type
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from datetime import timedelta, tzinfo

    from gecko_otel.typing import MonitorHandle as Monitor

_UNENCODABLE: Final = re.compile("[\x00\ud800-\udfff]")

P = ParamSpec("P")
R = TypeVar("R")


def usable_collector_type(name: str) -> str:
    """``name`` made acceptable as a collector type (for names we did not choose, like job ids).

    NUL characters and lone surrogates become U+FFFD; a name over the limit
    is cut and ends in a hash of the whole name, so two long names stay apart.
    """
    name = _UNENCODABLE.sub("\ufffd", name)
    if len(name) <= MAX_COLLECTOR_TYPE_LENGTH:
        return name
    import hashlib  # noqa: PLC0415 - only for names over the limit: a lighter import

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[: MAX_COLLECTOR_TYPE_LENGTH - 17]}~{digest}"


def _check_attributes(attributes: object) -> Mapping[str, Any] | None:
    if attributes is not None and (
        not isinstance(attributes, Mapping) or not all(isinstance(k, str) and k for k in attributes)
    ):
        raise ConfigError(
            "attributes must map non-empty attribute names to values, such as "
            f"{{'faas.trigger': 'timer'}}, got {attributes!r}"
        )
    return attributes


def _check_metadata(metadata: object) -> Mapping[Any, Any] | None:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ConfigError(
            f"metadata must be a mapping such as {{'network': 'solana'}}, got {metadata!r}"
        )
    return metadata


# -- the decorator ------------------------------------------------------------


@overload
def collection(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def collection(
    collector_type: str | None = None,
    /,
    *,
    metadata: Mapping[str, Any] | None = None,
    monitor: Monitor | None = None,
    every: timedelta | float | None = None,
    cron: str | None = None,
    grace: timedelta | float | None = None,
    max_runtime: timedelta | float | None = None,
    timezone: tzinfo | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def collection(
    collector_type: Any = None,
    /,
    *,
    metadata: Mapping[str, Any] | None = None,
    monitor: Monitor | None = None,
    every: timedelta | float | None = None,
    cron: str | None = None,
    grace: timedelta | float | None = None,
    max_runtime: timedelta | float | None = None,
    timezone: tzinfo | None = None,
) -> Any:
    """Make every call of the decorated function a collection run.

    Works on functions, coroutine functions, generator and async generator
    functions (the run covers the whole iteration), methods, staticmethods
    and classmethods; bare (``@collection``) or with arguments.

    Args:
        collector_type: The collector's name (span attribute
            ``gecko.collector.type``); defaults to the function's qualified name.
        metadata: Constant metadata for every run, sanitised once here.
        monitor: The Monitor to report to; the global one (``setup()``) by default.
        every: The collector should start a run this often (timedelta or
            seconds); see `gecko_otel.Monitor.expect`.
        cron: ...or on this cron schedule, e.g. ``"*/5 * * * *"``.
        grace: How late a start may be before the run counts as missed.
        max_runtime: How long a run may go on before ``runtime_exceeded``.
        timezone: Time zone of ``cron`` (UTC by default).

    Raises:
        ConfigError: ``collector_type`` is empty or not a string, ``metadata``
            is not a mapping, or the schedule arguments are invalid (a
            ``ValueError``, at decoration time).
    """
    scheduled = any(x is not None for x in (every, cron, grace, max_runtime))
    if scheduled:  # the schedule code loads only for collectors that declare one
        from gecko_otel._health.expectations import make_expectation  # noqa: PLC0415
    expectation = (
        make_expectation(every=every, cron=cron, grace=grace, max_runtime=max_runtime, tz=timezone)
        if scheduled
        else None
    )
    if callable(collector_type) or isinstance(collector_type, staticmethod | classmethod):
        return _decorate(collector_type, None, None, None)
    if collector_type is not None:
        check_collector_type(collector_type)
    _check_metadata(metadata)

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        wrapped = _decorate(func, collector_type, metadata, monitor)
        if expectation is not None:
            name = _collector_type_of(wrapped)
            if monitor is not None:
                _state.arm_expectation(monitor, name, expectation, timezone)
            else:
                _state.declare(name, expectation, timezone)
        return cast("Callable[P, R]", wrapped)

    return decorator


def _collector_type_of(wrapped: Any) -> str:
    inner = getattr(wrapped, "__func__", wrapped)  # staticmethod / classmethod
    return str(inner.__gecko_otel_collector_type__)


def _decorate(
    func: Any,
    collector_type: str | None,
    metadata: Mapping[str, Any] | None,
    monitor: Monitor | None,
) -> Any:
    if isinstance(func, staticmethod):
        return staticmethod(_decorate(func.__func__, collector_type, metadata, monitor))
    if isinstance(func, classmethod):
        return classmethod(_decorate(func.__func__, collector_type, metadata, monitor))
    if not callable(func):
        raise ConfigError(f"@collection decorates functions, got {func!r}")
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    name = collector_type if collector_type is not None else check_collector_type(qualname)
    module = getattr(func, "__module__", None)
    function_name = f"{module}.{qualname}" if module and qualname else qualname
    target = Target(name, function_name, metadata, monitor)
    wrapper: Callable[..., Any]
    if inspect.isasyncgenfunction(func):
        wrapper = wrap_async_generator(func, target)
    elif inspect.isgeneratorfunction(func):
        wrapper = wrap_generator(func, target)
    elif inspect.iscoroutinefunction(func):
        wrapper = wrap_coroutine(func, target)
    else:
        wrapper = wrap_function(func, target)
    wrapper = functools.wraps(func)(wrapper)
    wrapper.__gecko_otel_collector_type__ = name  # type: ignore[attr-defined]
    return wrapper


#: Blocks of ``track_collection`` open in this thread or asyncio task:
#: (instance, run, context token), innermost last. One module-level variable,
#: so the context holds one entry however many instances are used, and
#: blocks sharing an instance across threads or tasks never swap runs.
_OPEN: contextvars.ContextVar[tuple[tuple[track_collection, Run | None, object], ...]] = (
    contextvars.ContextVar("gecko_otel.track_collection", default=())
)


class track_collection:
    """A collection run around a block: ``with`` or ``async with``.

    >>> with track_collection("trade_collector") as run:
    ...     run.add_records(120)

    An exception leaving the block ends the run as failure, timeout or
    cancelled (and propagates unchanged); otherwise the run ends success or
    partial. Each ``with`` gets a fresh run, so one instance can be reused,
    nested, and shared by threads and asyncio tasks.

    Args:
        collector_type: The collector's name.
        metadata: Metadata for the run (``gecko.metadata.*`` attributes).
        monitor: The Monitor to report to; the global one by default.
        attributes: Extra span attributes under their own names (e.g. the
            ``faas.*`` attributes a scheduler integration adds).

    Raises:
        ConfigError: ``collector_type`` is empty or not a string, or
            ``metadata`` or ``attributes`` is not a mapping.
    """

    __slots__ = ("_target",)

    def __init__(
        self,
        collector_type: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        monitor: Monitor | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self._target = Target(
            check_collector_type(collector_type),
            None,
            _check_metadata(metadata),
            monitor,
            _check_attributes(attributes),
        )

    def __enter__(self) -> Run:
        run = self._target.begin()
        if run is None:
            _OPEN.set((*_OPEN.get(), (self, None, None)))
            return _detached_run(self._target.collector_type)
        token = context.attach(cast("context.Context", run.otel_context))
        _OPEN.set((*_OPEN.get(), (self, run, token)))
        return run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entries = _OPEN.get()
        for i in range(len(entries) - 1, -1, -1):  # this instance's innermost block
            if entries[i][0] is self:
                break
        else:
            return
        _, run, token = entries[i]
        _OPEN.set(entries[:i] + entries[i + 1 :])
        if run is None:
            return
        context.detach(token)  # type: ignore[arg-type]
        run.finish(exc)

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _detached_run(collector_type: str) -> Run:
    """A Run on no-op providers, for user code to talk to when a run could not start."""
    from opentelemetry.metrics import NoOpMeterProvider  # noqa: PLC0415 - rare error path
    from opentelemetry.trace import NoOpTracerProvider  # noqa: PLC0415

    from gecko_otel._config import MonitorConfig  # noqa: PLC0415

    instr = Instrumentation(NoOpTracerProvider(), NoOpMeterProvider(), MonitorConfig())
    return Run(instr.prepare(collector_type))
