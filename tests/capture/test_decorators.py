"""The decorator and context manager: statuses, pass-through, spans and metrics."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode

import gecko_otel
from gecko_otel import ExecutionStatus, current_run, semconv, track_collection
from gecko_otel.testing import CapturedRuns
from support.runs import run


@dataclass
class CollectionResult:
    """The GeckoTerminal collector's result shape."""

    success: bool
    records_collected: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def only_run(captured: CapturedRuns) -> gecko_otel.ExecutionRecord:
    [record] = captured.runs
    return record


def only_span(captured: CapturedRuns) -> Any:
    [span] = captured.spans
    return span


# -- statuses ------------------------------------------------------------------


def test_success_records_span_attributes_and_history(captured: CapturedRuns) -> None:
    @gecko_otel.collection("pool_collector", metadata={"network": "solana"})
    def collect() -> str:
        run = current_run()
        assert run is not None
        run.add_records(40)
        run.add_records(2)
        return "done"

    assert collect() == "done"
    record = only_run(captured)
    span = only_span(captured)
    assert record.status is ExecutionStatus.SUCCESS
    assert record.records_collected == 42
    assert record.metadata == {"network": "solana"}
    assert record.duration_seconds is not None and record.duration_seconds >= 0
    assert record.start_time.tzinfo is not None and record.end_time is not None
    assert record.end_time >= record.start_time
    assert span.name == "pool_collector"
    assert span.attributes[semconv.COLLECTOR_TYPE] == "pool_collector"
    assert span.attributes[semconv.EXECUTION_ID] == record.execution_id
    assert span.attributes[semconv.COLLECTION_STATUS] == "success"
    assert span.attributes[semconv.COLLECTION_RECORDS] == 42
    assert span.attributes[semconv.METADATA_PREFIX + "network"] == "solana"
    assert span.attributes[semconv.CODE_FUNCTION_NAME].endswith("collect")
    assert semconv.ERROR_TYPE not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    assert record.trace_id == f"{span.context.trace_id:032x}"
    assert record.span_id == f"{span.context.span_id:016x}"


@pytest.mark.parametrize(
    ("action", "expected_warnings", "expected_errors"),
    [
        (lambda run: run.warn("3 pools skipped"), ("3 pools skipped",), ()),
        (lambda run: run.error("page 2 returned 502"), (), ("page 2 returned 502",)),
        (lambda run: run.mark_partial("rate limited"), ("rate limited",), ()),
        (lambda run: run.mark_partial(), (), ()),
    ],
)
def test_partial(
    captured: CapturedRuns,
    action: Any,
    expected_warnings: tuple[str, ...],
    expected_errors: tuple[str, ...],
) -> None:
    with track_collection("trade_collector") as run:
        action(run)
    record = only_run(captured)
    span = only_span(captured)
    assert record.status is ExecutionStatus.PARTIAL
    assert record.warnings == expected_warnings
    assert record.errors == expected_errors
    assert span.status.status_code is StatusCode.UNSET
    events = [(e.name, e.attributes[semconv.EVENT_MESSAGE]) for e in span.events]
    assert events == [(semconv.EVENT_WARNING, w) for w in expected_warnings] + [
        (semconv.EVENT_ERROR, e) for e in expected_errors
    ]


def test_failure_records_exception_on_span(captured: CapturedRuns) -> None:
    class QuotaExceeded(RuntimeError):
        pass

    @gecko_otel.collection("ohlcv_collector")
    def collect() -> None:
        raise QuotaExceeded("429 from API")

    with pytest.raises(QuotaExceeded):
        collect()
    record = only_run(captured)
    span = only_span(captured)
    expected_type = f"{__name__}.test_failure_records_exception_on_span.<locals>.QuotaExceeded"
    assert record.status is ExecutionStatus.FAILURE
    assert record.error_type == expected_type
    assert record.error_message == "429 from API"
    assert record.errors == (f"{expected_type}: 429 from API",)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "429 from API"
    assert span.attributes[semconv.ERROR_TYPE] == expected_type
    assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize(
    "exc",
    [TimeoutError("slow"), asyncio.TimeoutError(), concurrent.futures.TimeoutError()],
)
def test_timeout(captured: CapturedRuns, exc: BaseException) -> None:
    with pytest.raises(type(exc)), track_collection("c"):
        raise exc
    record = only_run(captured)
    assert record.status is ExecutionStatus.TIMEOUT
    assert record.error_type == "TimeoutError" or record.error_type.endswith("TimeoutError")
    assert only_span(captured).status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_cancelled(captured: CapturedRuns, exc_type: type[BaseException]) -> None:
    with pytest.raises(exc_type), track_collection("c"):
        raise exc_type()
    record = only_run(captured)
    assert record.status is ExecutionStatus.CANCELLED
    assert record.error_type is None
    assert only_span(captured).status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    ("result", "status", "records", "errors", "warnings"),
    [
        (CollectionResult(success=True, records_collected=12), "success", 12, (), ()),
        (
            CollectionResult(success=True, records_collected=5, warnings=["stale page"]),
            "partial",
            5,
            (),
            ("stale page",),
        ),
        (
            CollectionResult(success=True, errors=["pool 7 failed"]),
            "partial",
            0,
            ("pool 7 failed",),
            (),
        ),
        (
            CollectionResult(success=False, errors=["API down"]),
            "failure",
            0,
            ("API down",),
            (),
        ),
    ],
)
def test_result_object_is_read(
    captured: CapturedRuns,
    result: CollectionResult,
    status: str,
    records: int,
    errors: tuple[str, ...],
    warnings: tuple[str, ...],
) -> None:
    @gecko_otel.collection("pool_collector")
    def collect() -> CollectionResult:
        current_run().add_records(999)  # type: ignore[union-attr]
        return result

    assert collect() is result
    record = only_run(captured)
    assert record.status.value == status
    assert record.records_collected == records  # the result replaces the 999 reported
    assert record.errors == errors
    assert record.warnings == warnings
    if status == "failure":
        assert record.error_type == semconv.ERROR_TYPE_OTHER
        assert record.error_message == "API down"
        assert only_span(captured).status.status_code is StatusCode.ERROR


def test_result_with_raising_property_is_not_fatal(captured: CapturedRuns) -> None:
    class Weird:
        @property
        def success(self) -> bool:
            raise RuntimeError("nope")

    weird = Weird()

    @gecko_otel.collection("c")
    def collect() -> Weird:
        return weird

    assert collect() is weird
    assert only_run(captured).status is ExecutionStatus.SUCCESS


# -- pass-through --------------------------------------------------------------


def test_exception_passes_through_same_object_and_traceback(captured: CapturedRuns) -> None:
    error = ValueError("bad pool")

    def deep() -> None:
        raise error

    @gecko_otel.collection("c")
    def collect() -> None:
        deep()

    with pytest.raises(ValueError) as info:
        collect()
    assert info.value is error
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-2:] == ["collect", "deep"]


def test_signature_and_metadata_preserved() -> None:
    def collect(network: str, *, page: int = 1) -> list[int]:
        """Collect pools."""
        return [page]

    wrapped = gecko_otel.collection("c")(collect)
    assert wrapped.__name__ == "collect"
    assert wrapped.__doc__ == "Collect pools."
    assert wrapped.__wrapped__ is collect  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(collect)


@pytest.mark.parametrize("kind", ["sync", "async", "gen", "agen"])
def test_function_kind_preserved(kind: str) -> None:
    def sync() -> None: ...

    async def coro() -> None: ...

    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    func = {"sync": sync, "async": coro, "gen": gen, "agen": agen}[kind]
    wrapped = gecko_otel.collection(func)
    assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(func)
    assert inspect.isgeneratorfunction(wrapped) == inspect.isgeneratorfunction(func)
    assert inspect.isasyncgenfunction(wrapped) == inspect.isasyncgenfunction(func)


def test_bare_decorator_uses_qualified_name(captured: CapturedRuns) -> None:
    @gecko_otel.collection
    def collect_trades() -> int:
        return 1

    assert collect_trades() == 1
    assert only_run(captured).collector_type.endswith("<locals>.collect_trades")


def test_methods_staticmethods_classmethods(captured: CapturedRuns) -> None:
    class Collector:
        def __init__(self) -> None:
            self.factor = 3

        @gecko_otel.collection
        def run(self, n: int) -> int:
            return n * self.factor

        @gecko_otel.collection("static")
        @staticmethod
        def helper(n: int) -> int:
            return n + 1

        @gecko_otel.collection("klass")
        @classmethod
        def build(cls, n: int) -> int:
            return n - 1

    collector = Collector()
    assert collector.run(2) == 6
    assert Collector.helper(2) == 3
    assert collector.helper(5) == 6
    assert Collector.build(2) == 1
    types = [r.collector_type for r in captured.runs]
    assert types[0].endswith("Collector.run")
    assert types[1:] == ["static", "static", "klass"]


# -- generators ----------------------------------------------------------------


def test_generator_run_covers_whole_iteration(captured: CapturedRuns) -> None:
    @gecko_otel.collection("pages")
    def pages() -> Any:
        for page in range(3):
            current_run().add_records(10)  # type: ignore[union-attr]
            yield page
        return "finished"

    gen = pages()
    assert captured.runs == []  # nothing runs before the first next()
    assert list(gen) == [0, 1, 2]
    record = only_run(captured)
    assert record.status is ExecutionStatus.SUCCESS
    assert record.records_collected == 30


def test_generator_return_value_and_send(captured: CapturedRuns) -> None:
    @gecko_otel.collection("echo")
    def echo() -> Any:
        received = []
        value = yield "ready"
        while value is not None:
            received.append(value)
            value = yield value * 2
        return received

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send(2) == 4
    assert gen.send(5) == 10
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == [2, 5]
    assert only_run(captured).status is ExecutionStatus.SUCCESS


def test_generator_throw_handled_and_unhandled(captured: CapturedRuns) -> None:
    @gecko_otel.collection("g")
    def gen() -> Any:
        try:
            yield 1
        except KeyError:
            current_run().warn("recovered")  # type: ignore[union-attr]
            yield 2
        yield 3

    g = gen()
    assert next(g) == 1
    assert g.throw(KeyError("k")) == 2
    error = ValueError("fatal")
    with pytest.raises(ValueError) as info:
        g.throw(error)
    assert info.value is error
    record = only_run(captured)
    assert record.status is ExecutionStatus.FAILURE
    assert record.warnings == ("recovered",)


def test_generator_closed_early_ends_the_run(captured: CapturedRuns) -> None:
    cleaned = []

    @gecko_otel.collection("g")
    def gen() -> Any:
        try:
            current_run().add_records(1)  # type: ignore[union-attr]
            yield 1
            yield 2
        finally:
            cleaned.append(True)

    g = gen()
    assert next(g) == 1
    g.close()
    assert cleaned == [True]
    record = only_run(captured)
    assert record.status is ExecutionStatus.SUCCESS
    assert record.records_collected == 1


def test_generator_context_is_not_current_for_consumer(captured: CapturedRuns) -> None:
    @gecko_otel.collection("g")
    def gen() -> Any:
        yield current_run()

    for inner in gen():
        assert inner is not None
        assert current_run() is None
        assert not trace.get_current_span().get_span_context().is_valid


async def test_async_generator_protocol(captured: CapturedRuns) -> None:
    @gecko_otel.collection("ag")
    async def agen() -> Any:
        value = yield 0
        try:
            while True:
                await asyncio.sleep(0)
                current_run().add_records(1)  # type: ignore[union-attr]
                value = yield value
        except KeyError:
            yield "caught"

    g = agen()
    assert await g.asend(None) == 0
    assert await g.asend("a") == "a"
    assert await g.athrow(KeyError()) == "caught"
    await g.aclose()
    record = only_run(captured)
    assert record.status is ExecutionStatus.SUCCESS
    assert record.records_collected == 1


async def test_async_generator_exception_and_full_iteration(captured: CapturedRuns) -> None:
    @gecko_otel.collection("ag")
    async def agen(fail: bool) -> Any:
        yield 1
        if fail:
            raise RuntimeError("page broke")
        yield 2

    assert [x async for x in agen(False)] == [1, 2]
    with pytest.raises(RuntimeError, match="page broke"):
        async for _ in agen(True):
            pass
    statuses = [r.status for r in captured.runs]
    assert statuses == [ExecutionStatus.SUCCESS, ExecutionStatus.FAILURE]


# -- async, cancellation, nesting, concurrency ------------------------------------


async def test_coroutine_and_async_context_manager(captured: CapturedRuns) -> None:
    @gecko_otel.collection("pools")
    async def collect() -> int:
        await asyncio.sleep(0)
        current_run().add_records(3)  # type: ignore[union-attr]
        return 3

    assert await collect() == 3
    async with track_collection("trades") as run:
        await asyncio.sleep(0)
        run.add_records(4)
    assert [(r.collector_type, r.records_collected) for r in captured.runs] == [
        ("pools", 3),
        ("trades", 4),
    ]


async def test_cancelled_task(captured: CapturedRuns) -> None:
    started = asyncio.Event()

    @gecko_otel.collection("slow")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert only_run(captured).status is ExecutionStatus.CANCELLED


async def test_asyncio_timeout_is_timeout(captured: CapturedRuns) -> None:
    @gecko_otel.collection("slow")
    async def slow() -> None:
        await asyncio.wait_for(asyncio.sleep(60), timeout=0.01)

    with pytest.raises(asyncio.TimeoutError):
        await slow()
    assert only_run(captured).status is ExecutionStatus.TIMEOUT


def test_nested_runs_are_parent_and_child(captured: CapturedRuns) -> None:
    @gecko_otel.collection("inner")
    def inner() -> None:
        current_run().add_records(1)  # type: ignore[union-attr]

    with track_collection("outer") as outer:
        inner()
        assert current_run() is outer
        outer.add_records(5)
    spans = {s.name: s for s in captured.spans}
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    records = {r.collector_type: r.records_collected for r in captured.runs}
    assert records == {"inner": 1, "outer": 5}


def test_user_spans_inside_a_run_are_children_not_runs(captured: CapturedRuns) -> None:
    tracer = captured.monitor.instrumentation.tracer  # same provider as the runs

    with track_collection("outer") as run, tracer.start_as_current_span("http GET /pools"):
        assert current_run() is run
    names = sorted(s.name for s in captured.spans)
    assert names == ["http GET /pools", "outer"]
    assert [r.collector_type for r in captured.runs] == ["outer"]


def test_concurrent_threads_exact_counts(captured: CapturedRuns) -> None:
    @gecko_otel.collection("threaded")
    def collect(i: int) -> int:
        run = current_run()
        assert run is not None
        run.add_records(i % 7)
        if i % 10 == 0:
            run.warn("w")
        return i

    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        barrier.wait()
        for i in range(offset, 2000, 8):
            assert collect(i) == i

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = captured.monitor.statistics("threaded")
    assert stats.total_executions == 2000
    assert stats.partial_executions == 200
    assert stats.successful_executions == 1800
    assert stats.total_records_collected == sum(i % 7 for i in range(2000))
    assert len({r.execution_id for r in captured.monitor.history("threaded")}) == 1000


async def test_concurrent_tasks_see_their_own_run(captured: CapturedRuns) -> None:
    @gecko_otel.collection("task")
    async def collect(i: int) -> str:
        run = current_run()
        assert run is not None
        await asyncio.sleep(0)
        assert current_run() is run
        run.add_records(i)
        await asyncio.sleep(0)
        assert current_run() is run
        return run.execution_id

    ids = await asyncio.gather(*(collect(i) for i in range(1000)))
    assert len(set(ids)) == 1000
    stats = captured.monitor.statistics("task")
    assert stats.total_executions == 1000
    assert stats.total_records_collected == sum(range(1000))
    assert captured.monitor.active_runs() == []


# -- metrics ----------------------------------------------------------------------


def test_metrics_duration_records_and_active(captured: CapturedRuns) -> None:
    seen_active: list[int] = []

    @gecko_otel.collection("m")
    def collect(fail: bool) -> None:
        current_run().add_records(5)  # type: ignore[union-attr]
        points = captured.metrics()[semconv.METRIC_ACTIVE]
        seen_active.append(points[0][1])
        if fail:
            raise KeyError("x")

    collect(False)
    collect(False)
    with pytest.raises(KeyError):
        collect(True)
    metrics = captured.metrics()
    durations = {
        frozenset(attrs.items()): point for attrs, point in metrics[semconv.METRIC_DURATION]
    }
    ok = durations[
        frozenset({semconv.COLLECTION_STATUS: "success", semconv.COLLECTOR_TYPE: "m"}.items())
    ]
    failed = durations[
        frozenset(
            {
                semconv.COLLECTION_STATUS: "failure",
                semconv.COLLECTOR_TYPE: "m",
                semconv.ERROR_TYPE: "KeyError",
            }.items()
        )
    ]
    assert ok.count == 2
    assert failed.count == 1
    assert list(ok.explicit_bounds) == list(semconv.DURATION_BUCKETS)
    assert metrics[semconv.METRIC_RECORDS] == [({semconv.COLLECTOR_TYPE: "m"}, 15)]
    assert seen_active == [1, 1, 1]
    assert metrics[semconv.METRIC_ACTIVE] == [({semconv.COLLECTOR_TYPE: "m"}, 0)]


def test_a_second_monitor_on_the_same_providers_still_reports_metrics() -> None:
    tracer_provider = TracerProvider()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    first = gecko_otel.Monitor(
        tracer_provider=tracer_provider, meter_provider=meter_provider, watchdog=False
    )
    first.shutdown()
    second = gecko_otel.Monitor(
        tracer_provider=tracer_provider, meter_provider=meter_provider, watchdog=False
    )
    try:
        for _ in range(5):
            with track_collection("pools", monitor=second) as r:
                r.add_records(2)
        data = reader.get_metrics_data()
        names = {
            metric.name: metric
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        }
        [point] = names["gecko.collection.records"].data.data_points
        assert point.value == 10
        assert "gecko.collector.health_status" in names
    finally:
        second.shutdown()
        tracer_provider.shutdown()
        meter_provider.shutdown()


# -- misuse is never fatal -----------------------------------------------------------


def test_bad_run_calls_are_ignored_with_a_warning(
    captured: CapturedRuns, caplog: pytest.LogCaptureFixture
) -> None:
    with track_collection("c") as run:
        run.add_records(-1)
        run.add_records("12")  # type: ignore[arg-type]
        run.add_records(True)
        run.records_collected = 4
        run.records_collected = None  # type: ignore[assignment]
    run.add_records(1)  # after the end
    run.warn("late")
    record = only_run(captured)
    assert record.records_collected == 4
    assert record.status is ExecutionStatus.SUCCESS
    messages = [r.getMessage() for r in caplog.records]
    assert sum("ignored" in m for m in messages) == 6
    assert any("already ended" in m for m in messages)


def test_messages_are_bounded(captured: CapturedRuns) -> None:
    config = gecko_otel.MonitorConfig(max_messages_per_run=3, max_attribute_length=10)
    from gecko_otel.testing import capture_runs

    with capture_runs(config) as local, track_collection("c") as run:
        for i in range(10):
            run.warn(f"warning number {i}")
    [record] = local.runs
    assert record.warnings == ("warning nu",) * 3
    assert captured.runs == []


def test_internal_error_never_reaches_user_code(
    captured: CapturedRuns, internal_errors: list[tuple[str, BaseException]], monkeypatch: Any
) -> None:
    from gecko_otel._capture.run import Run

    def broken_start(self: Run) -> None:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(Run, "start", broken_start)

    @gecko_otel.collection("c")
    def collect() -> int:
        assert current_run() is None
        return 7

    @gecko_otel.collection("g")
    def gen() -> Any:
        yield 1

    assert collect() == 7
    assert list(gen()) == [1]
    with track_collection("t") as run:
        run.add_records(3)  # a detached run still answers
    assert [where for where, _ in internal_errors] == ["collection start"] * 3
    assert gecko_otel.internal_error_count() >= 3
    assert captured.runs == []


class RaisingProcessor(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("third-party processor bug")


def test_a_raising_span_processor_never_reaches_user_code(
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(RaisingProcessor())  # before ours: ours never sees the end
    monitor = gecko_otel.Monitor(
        tracer_provider=provider, meter_provider=MeterProvider(), watchdog=False
    )
    try:

        @gecko_otel.collection("c", monitor=monitor)
        def collect() -> int:
            return 7

        assert collect() == 7
        assert monitor.active_runs() == []
        assert [where for where, _ in internal_errors] == ["span.end (a span processor raised)"]
    finally:
        monitor.shutdown()
        provider.shutdown()


def test_no_monitor_still_runs_code() -> None:
    @gecko_otel.collection("no_monitor")
    def collect() -> int:
        run = current_run()
        assert run is not None
        run.add_records(1)
        return 5

    assert gecko_otel.get_monitor() is None
    assert collect() == 5


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
async def test_explicit_monitor_argument(captured: CapturedRuns) -> None:
    from gecko_otel.testing import capture_runs

    with capture_runs() as other:

        @gecko_otel.collection("explicit", monitor=captured.monitor)
        async def collect() -> None:
            async with asyncio.timeout(5):
                await asyncio.sleep(0)

        await collect()
        assert other.runs == []
    assert [r.collector_type for r in captured.runs] == ["explicit"]


def test_two_monitors_on_one_tracer_provider_count_only_their_own_runs() -> None:
    provider = TracerProvider()
    a = gecko_otel.Monitor(tracer_provider=provider, meter_provider=MeterProvider(), watchdog=False)
    b = gecko_otel.Monitor(tracer_provider=provider, meter_provider=MeterProvider(), watchdog=False)
    try:
        run("for_a", monitor=a)
        run("for_b", monitor=b)
        run("for_b", monitor=b)
        assert [r.collector_type for r in a.history()] == ["for_a"]
        assert [r.collector_type for r in b.history()] == ["for_b", "for_b"]
    finally:
        a.shutdown()
        b.shutdown()
        provider.shutdown()


def test_dropped_messages_are_counted(captured: CapturedRuns) -> None:
    from gecko_otel.testing import capture_runs

    with capture_runs(gecko_otel.MonitorConfig(max_messages_per_run=2)) as local:
        with track_collection("c") as run:
            for i in range(5):
                run.warn(f"w{i}")
            run.error("e0")
            run.error("e1")
            run.error("e2")
        [record] = local.runs
        [span] = local.spans
    assert record.warnings == ("w0", "w1")
    assert record.errors == ("e0", "e1")
    assert record.dropped_messages == 4
    assert span.attributes[semconv.COLLECTION_DROPPED_MESSAGES] == 4
    assert record.to_dict()["dropped_messages"] == 4


async def test_one_track_collection_shared_by_concurrent_tasks(captured: CapturedRuns) -> None:
    shared = track_collection("shared")

    async def worker(i: int) -> str:
        async with shared as run:
            await asyncio.sleep(0.001 * (5 - i))
            run.add_records(i)
            if i % 2:
                raise ValueError(i)
            return run.execution_id

    results = await asyncio.gather(*(worker(i) for i in range(5)), return_exceptions=True)
    by_records = {r.records_collected: r for r in captured.runs}
    assert sorted(by_records) == [0, 1, 2, 3, 4]
    for i in range(5):
        expected = ExecutionStatus.FAILURE if i % 2 else ExecutionStatus.SUCCESS
        assert by_records[i].status is expected
        if not i % 2:
            assert by_records[i].execution_id == results[i]
    with shared as outer, shared as inner:  # nesting one instance works too
        assert current_run() is inner
    assert inner is not outer
    assert [r.collector_type for r in captured.runs[-2:]] == ["shared", "shared"]


def test_track_collection_leaves_nothing_behind_in_the_context(captured: CapturedRuns) -> None:
    import contextvars

    before = len(contextvars.copy_context())
    for _ in range(1000):
        with track_collection("inline"):  # a new instance each time, as users write it
            pass
    assert len(contextvars.copy_context()) <= before + 1
    assert captured.monitor.statistics("inline").total_executions == 1000
