"""One wrapper per kind of callable: function, coroutine, generator, async generator.

Each wrapper is one ``with``-shaped block around the user's call: start a
`Run` (or run uninstrumented if that failed), make it current, call, and
finish the run with whatever came out. Values, exceptions (same object,
traceback intact), the generator protocol and cancellation pass through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar, cast

from opentelemetry import context

from gecko_otel import _state
from gecko_otel._capture.instruments import Instrumentation, default_instrumentation
from gecko_otel._capture.run import Run
from gecko_otel._guard import report_internal_error

if TYPE_CHECKING:
    from gecko_otel._capture.instruments import Prepared
    from gecko_otel.typing import MonitorHandle as Monitor

P = ParamSpec("P")
R = TypeVar("R")

#: Gives the span attributes of one run alone (a scheduled run's ``faas.time``),
#: or None; called as the run begins, on the run's thread or task.
PerRun: TypeAlias = Callable[[], Mapping[str, str] | None]


class Target:
    """What a decorated function or a ``track_collection`` call runs as."""

    __slots__ = (
        "_prepared",
        "attributes",
        "collector_type",
        "function_name",
        "metadata",
        "monitor",
    )

    def __init__(
        self,
        collector_type: str,
        function_name: str | None,
        metadata: Mapping[Any, Any] | None,
        monitor: Monitor | None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.collector_type = collector_type
        self.function_name = function_name
        self.metadata = metadata
        self.monitor = monitor
        self.attributes = attributes
        self._prepared: Prepared | None = None

    def begin(self, per_run: PerRun | None = None) -> Run | None:
        """A started Run, or None (and the error counted) if starting failed.

        ``per_run`` gives the span attributes of this run alone (a scheduled
        run's ``faas.time``), added as they are: the caller makes them.
        """
        try:
            extra = None if per_run is None else per_run()
            monitor = self.monitor
            instr: Instrumentation = (
                monitor.instrumentation
                if monitor is not None
                else _state.installed_instrumentation() or default_instrumentation()
            )
            prepared = self._prepared
            if prepared is None or prepared.instr is not instr:
                # Prepared once per Monitor: setup() may come after decoration.
                prepared = self._prepared = instr.prepare(
                    self.collector_type,
                    function_name=self.function_name,
                    metadata=self.metadata,
                    attributes=self.attributes,
                )
            run = Run(prepared)
            run.start(extra)
            return run
        except Exception as exc:  # noqa: BLE001 - the collector must run regardless
            report_internal_error("collection start", exc)
            return None


def wrap_function(
    func: Callable[P, R], target: Target, per_run: PerRun | None = None
) -> Callable[P, R]:
    """``func`` in a run of ``target``; ``per_run`` gives each run's own span attributes."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        run = target.begin(per_run)
        if run is None:
            return func(*args, **kwargs)
        token = context.attach(cast("context.Context", run.otel_context))
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            context.detach(token)
            run.finish(exc)
            raise
        context.detach(token)
        run.finish(None, result)
        return result

    return wrapper


def wrap_coroutine(
    func: Callable[P, Any], target: Target, per_run: PerRun | None = None
) -> Callable[P, Any]:
    """``func``'s coroutine in a run of ``target`` (see `wrap_function`)."""

    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        run = target.begin(per_run)
        if run is None:
            return await func(*args, **kwargs)
        token = context.attach(cast("context.Context", run.otel_context))
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            context.detach(token)
            run.finish(exc)
            raise
        context.detach(token)
        run.finish(None, result)
        return result

    return wrapper


def wrap_generator(
    func: Callable[P, Generator[Any, Any, Any]], target: Target
) -> Callable[P, Generator[Any, Any, Any]]:
    # The run's context is current only while the generator's own code runs
    # (inside send/throw/close), never while the consumer runs between
    # items, so the consumer's spans are not mistaken for the run's children.
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Generator[Any, Any, Any]:
        gen = func(*args, **kwargs)
        run = target.begin()
        if run is None:
            return (yield from gen)
        ctx = cast("context.Context", run.otel_context)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = context.attach(ctx)
            try:
                item = gen.send(sent) if thrown is None else gen.throw(thrown)
            except StopIteration as stop:
                context.detach(token)
                run.finish(None, stop.value)
                return stop.value
            except BaseException as exc:
                context.detach(token)
                run.finish(exc)
                raise
            context.detach(token)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                # The consumer stopped early (close() or garbage collection):
                # the run ends with what it did so far.
                token = context.attach(ctx)
                try:
                    gen.close()
                except BaseException as exc:
                    context.detach(token)
                    run.finish(exc)
                    raise
                context.detach(token)
                run.finish()
                raise
            except BaseException as exc:  # noqa: BLE001 - relayed into the inner generator
                thrown, sent = exc, None

    return wrapper


def wrap_async_generator(
    func: Callable[P, AsyncGenerator[Any, Any]], target: Target
) -> Callable[P, AsyncGenerator[Any, Any]]:
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[Any, Any]:
        agen = func(*args, **kwargs)
        run = target.begin()
        if run is None:
            async for item in _passthrough(agen):
                yield item
            return
        ctx = cast("context.Context", run.otel_context)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = context.attach(ctx)
            try:
                if thrown is None:
                    item = await agen.asend(sent)
                else:
                    item = await agen.athrow(thrown)
            except StopAsyncIteration:
                context.detach(token)
                run.finish()
                return
            except BaseException as exc:
                context.detach(token)
                run.finish(exc)
                raise
            context.detach(token)
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                token = context.attach(ctx)
                try:
                    await agen.aclose()
                except BaseException as exc:
                    context.detach(token)
                    run.finish(exc)
                    raise
                context.detach(token)
                run.finish()
                raise
            except BaseException as exc:  # noqa: BLE001 - relayed into the inner generator
                thrown, sent = exc, None

    return wrapper


async def _passthrough(agen: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    """Relay ``agen`` faithfully (asend/athrow/aclose) when no run could start."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            item = await (agen.asend(sent) if thrown is None else agen.athrow(thrown))
        except StopAsyncIteration:
            return
        thrown = None
        try:
            sent = yield item
        except GeneratorExit:
            await agen.aclose()
            raise
        except BaseException as exc:  # noqa: BLE001 - relayed into the inner generator
            thrown, sent = exc, None


# -- the context manager --------------------------------------------------------
