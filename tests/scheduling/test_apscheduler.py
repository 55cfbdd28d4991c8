"""APScheduler 3.x instrumentation, with real schedulers and short intervals."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import apscheduler.executors.asyncio as asyncio_executors
import apscheduler.executors.base as base_executors
import apscheduler.executors.debug as debug_executors
import apscheduler.executors.pool as pool_executors
import cronsim
import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)
from apscheduler.executors.pool import ProcessPoolExecutor, ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from opentelemetry.trace import StatusCode

import gecko_otel
from gecko_otel import ConfigError, ExecutionStatus
from gecko_otel.scheduling import _apscheduler_hooks as scheduler_hooks
from gecko_otel.scheduling import _apscheduler_runs as scheduler_runs
from gecko_otel.scheduling._apscheduler_triggers import crontab_of
from gecko_otel.scheduling.apscheduler import (
    APSchedulerInstrumentor,
    instrument_scheduler,
    is_instrumented,
    uninstrument_scheduler,
)
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs
from support.integration import skip_or_fail

VENV_BIN = Path(sys.executable).parent

#: APScheduler's functions as they were before any test instrumented anything.
ORIGINALS = {
    (pool_executors, "run_job"): pool_executors.run_job,
    (asyncio_executors, "run_job"): asyncio_executors.run_job,
    (asyncio_executors, "run_coroutine_job"): asyncio_executors.run_coroutine_job,
    (debug_executors, "run_job"): debug_executors.run_job,
    (base_executors, "run_job"): base_executors.run_job,
    (BaseScheduler, "start"): BaseScheduler.start,
}


def untouched() -> bool:
    """Whether every APScheduler function gecko-otel may replace is the original."""
    return all(getattr(owner, name) is original for (owner, name), original in ORIGINALS.items())


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


async def async_wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out after {timeout} s")


@dataclass
class CollectionResult:
    success: bool
    records_collected: int = 0
    errors: list[str] | None = None
    warnings: list[str] | None = None


class Events:
    """An APScheduler listener keeping the events it gets."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, event: Any) -> None:
        with self._lock:
            self.seen.append(event)

    def of(self, code: int) -> list[Any]:
        with self._lock:
            return [e for e in self.seen if e.code == code]


@pytest.fixture(autouse=True)
def _apscheduler_left_as_found() -> Iterator[None]:
    assert untouched(), "an earlier test left APScheduler patched"
    yield
    assert untouched(), "the test left APScheduler patched"


@pytest.fixture
def schedulers() -> Iterator[Callable[..., BackgroundScheduler]]:
    """Build BackgroundSchedulers on a thread pool; all are shut down and uninstrumented."""
    made: list[BackgroundScheduler] = []

    def make(**options: Any) -> BackgroundScheduler:
        options.setdefault("executors", {"default": ThreadPoolExecutor(4)})
        # Jobs here run every 50-100 ms: one stalled worker (a GC pause on a loaded
        # machine) must not turn a run into a max_instances skip. Tests of skips set it.
        options.setdefault("job_defaults", {"max_instances": 5})
        scheduler = BackgroundScheduler(timezone=timezone.utc, **options)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        uninstrument_scheduler(scheduler)


@pytest.fixture
def instrumentor() -> Iterator[APSchedulerInstrumentor]:
    inst = APSchedulerInstrumentor()
    yield inst
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


def runs_of(captured: CapturedRuns, collector_type: str, n: int = 1) -> list[Any]:
    return wait_until(
        lambda: (runs := captured.runs_of(collector_type)) and len(runs) >= n and runs,
        what=f"{n} runs of {collector_type}",
    )


def span_of(captured: CapturedRuns, execution_id: str) -> Any:
    [span] = [s for s in captured.spans if s.attributes.get("gecko.execution.id") == execution_id]
    return span


# -- runs -----------------------------------------------------------------------


def test_thread_pool_job_runs_become_collection_runs(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    def collect_pools() -> CollectionResult:
        return CollectionResult(success=True, records_collected=120)

    scheduler = schedulers()
    events = Events()
    scheduler.add_listener(events, EVENT_JOB_EXECUTED)
    scheduler.add_job(collect_pools, "interval", seconds=0.05, id="pool_collector")
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    runs = runs_of(captured, "pool_collector", 2)
    scheduler.shutdown(wait=True)

    runs = captured.runs_of("pool_collector")
    assert {r.status for r in runs} == {ExecutionStatus.SUCCESS}
    assert {r.records_collected for r in runs} == {120}
    scheduled = {e.scheduled_run_time for e in events.of(EVENT_JOB_EXECUTED)}
    assert len(scheduled) == len(runs)
    for run in runs:
        span = span_of(captured, run.execution_id)
        attrs = span.attributes
        assert attrs["gecko.collector.type"] == "pool_collector"
        assert attrs["faas.trigger"] == "timer"
        assert "faas.cron" not in attrs
        assert attrs["gecko.schedule.trigger"] == "interval[0:00:00.050000]"
        assert attrs["gecko.schedule.job_id"] == "pool_collector"
        assert attrs["code.function.name"].endswith("collect_pools")
        faas_time = datetime.fromisoformat(attrs["faas.time"].replace("Z", "+00:00"))
        assert faas_time in scheduled
        assert span.parent is None
    [(labels, point)] = [
        (labels, point)
        for labels, point in captured.metrics()["gecko.collection.duration"]
        if labels["gecko.collector.type"] == "pool_collector"
    ]
    assert labels["gecko.collection.status"] == "success"
    assert point.count == len(runs)


def test_a_changed_job_runs_as_changed(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    # What a job runs is worked out once per job; a change to its function, arguments
    # or misfire grace must still reach its next execution.
    calls: list[tuple[str, int]] = []

    def collect(n: int) -> None:
        calls.append(("collect", n))

    def collect_again(n: int) -> None:
        calls.append(("collect_again", n))

    scheduler = schedulers()
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    now = datetime.now(timezone.utc)
    scheduler.add_job(collect, "interval", hours=1, id="pools", args=[1], next_run_time=now)
    wait_until(lambda: len(captured.runs_of("pools")) == 1, what="the first run")
    scheduler.modify_job("pools", args=[2], next_run_time=datetime.now(timezone.utc))
    wait_until(lambda: len(captured.runs_of("pools")) == 2, what="the run with new arguments")
    scheduler.modify_job(
        "pools",
        func=collect_again,
        kwargs={"n": 3},
        args=[],
        next_run_time=datetime.now(timezone.utc),
    )
    wait_until(lambda: len(captured.runs_of("pools")) == 3, what="the run of the new function")
    scheduler.shutdown(wait=True)
    assert calls == [("collect", 1), ("collect", 2), ("collect_again", 3)]
    runs = sorted(captured.runs_of("pools"), key=lambda r: r.start_time)
    names = [span_of(captured, r.execution_id).attributes["code.function.name"] for r in runs]
    assert [name.rsplit(".", 1)[-1] for name in names] == ["collect", "collect", "collect_again"]
    times = {span_of(captured, r.execution_id).attributes["faas.time"] for r in runs}
    assert len(times) == 3  # each run its own scheduled time


def test_a_scheduler_that_ran_jobs_is_freed_once_dropped(captured: CapturedRuns) -> None:
    # What the plugin keeps per job must not keep the scheduler (nor its jobs) alive:
    # a service that rebuilds its scheduler would otherwise grow by one each time.
    ran = threading.Event()
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    now = datetime.now(timezone.utc)
    scheduler.add_job(ran.set, "interval", hours=1, id="pools", next_run_time=now)
    assert ran.wait(5)
    wait_until(lambda: captured.runs_of("pools"), what="the run")
    scheduler.shutdown(wait=True)
    dropped = weakref.ref(scheduler)
    del scheduler
    gc.collect()
    assert dropped() is None
    assert len(scheduler_runs.registry) == 0
    with scheduler_runs.lock:  # never uninstrumented: put APScheduler back as found
        scheduler_runs.restore_run_functions()


def test_cron_job_spans_carry_the_crontab(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    scheduler = schedulers()
    # Every second, but also a crontab-compatible trigger from_crontab would give.
    scheduler.add_job(lambda: None, CronTrigger(second="*", timezone=timezone.utc), id="tick")
    scheduler.add_job(
        lambda: None,
        CronTrigger.from_crontab("* * * * *", timezone=timezone.utc),
        id="minutely",
        next_run_time=datetime.now(timezone.utc),
    )
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    [tick] = runs_of(captured, "tick")[:1]
    [minutely] = runs_of(captured, "minutely")[:1]
    scheduler.shutdown(wait=True)
    assert "faas.cron" not in span_of(captured, tick.execution_id).attributes  # has seconds
    attrs = span_of(captured, minutely.execution_id).attributes
    assert attrs["faas.cron"] == "* * * * *"
    assert attrs["gecko.schedule.trigger"].startswith("cron[")


def test_spans_started_inside_a_job_are_its_children(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    tracer = captured.monitor.instrumentation.tracer

    def collect_trades() -> None:
        with tracer.start_as_current_span("GET /networks/solana/trades"):
            pass

    scheduler = schedulers()
    scheduler.add_job(collect_trades, "interval", seconds=0.05, id="trade_collector")
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    [run] = runs_of(captured, "trade_collector")[:1]
    scheduler.shutdown(wait=True)

    run_span = span_of(captured, run.execution_id)
    children = [s for s in captured.spans if s.name == "GET /networks/solana/trades"]
    assert children
    child = next(s for s in children if s.context.trace_id == run_span.context.trace_id)
    assert child.parent is not None
    assert child.parent.span_id == run_span.context.span_id


def test_job_exception_is_a_failure_and_still_reaches_apscheduler(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    raised: list[BaseException] = []

    def collect_ohlcv() -> None:
        exc = ConnectionError("api.geckoterminal.com refused")
        raised.append(exc)
        raise exc

    scheduler = schedulers()
    errors = Events()
    scheduler.add_listener(errors, EVENT_JOB_ERROR)
    scheduler.add_job(collect_ohlcv, "interval", seconds=0.05, id="ohlcv_collector")
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    wait_until(lambda: errors.of(EVENT_JOB_ERROR), what="EVENT_JOB_ERROR")
    [run] = runs_of(captured, "ohlcv_collector")[:1]
    scheduler.shutdown(wait=True)

    first = errors.of(EVENT_JOB_ERROR)[0]
    assert first.exception is raised[0]
    assert "ConnectionError" in first.traceback or "collect_ohlcv" in first.traceback
    assert run.status is ExecutionStatus.FAILURE
    assert run.error_type == "ConnectionError"
    assert span_of(captured, run.execution_id).status.status_code is StatusCode.ERROR


def test_max_instances_overlap_is_recorded_as_skipped(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    release = threading.Event()

    def collect_everything() -> None:
        release.wait(5)

    scheduler = schedulers()
    skips = Events()
    scheduler.add_listener(skips, EVENT_JOB_MAX_INSTANCES)
    scheduler.add_job(collect_everything, "interval", seconds=0.05, id="backfill", max_instances=1)
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    try:
        wait_until(lambda: skips.of(EVENT_JOB_MAX_INSTANCES), what="EVENT_JOB_MAX_INSTANCES")
        skipped = wait_until(
            lambda: captured.monitor.history("backfill", status="skipped"), what="skipped run"
        )
        alerts = captured.monitor.alerts(collector_type="backfill")
    finally:
        release.set()
    scheduler.shutdown(wait=True)

    skipped_times = {t for e in skips.of(EVENT_JOB_MAX_INSTANCES) for t in e.scheduled_run_times}
    oldest = skipped[-1]
    assert oldest.start_time in skipped_times
    assert oldest.duration_seconds is None
    assert oldest.end_time is None
    assert any("max_instances" in m for m in (*oldest.errors, *oldest.warnings))
    assert "overlap" in {a.rule for a in alerts}


def test_misfire_is_recorded_as_missed(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    called = threading.Event()
    due = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=30)
    scheduler = schedulers()
    missed = Events()
    scheduler.add_listener(missed, EVENT_JOB_MISSED)
    # Due 30 s ago with 1 s of grace: APScheduler's own misfire check says missed.
    scheduler.add_job(
        called.set,
        "interval",
        hours=1,
        id="dex_collector",
        next_run_time=due,
        misfire_grace_time=1,
    )
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    wait_until(lambda: missed.of(EVENT_JOB_MISSED), what="EVENT_JOB_MISSED")
    [record] = runs_of(captured, "dex_collector")
    scheduler.shutdown(wait=True)

    assert not called.is_set()
    assert record.status is ExecutionStatus.MISSED
    assert record.start_time == due
    assert record.duration_seconds is None
    assert any("misfire" in m for m in (*record.errors, *record.warnings))
    assert not [
        s for s in captured.spans if s.attributes["gecko.collector.type"] == "dex_collector"
    ]


async def test_asyncio_scheduler_runs_coroutine_and_sync_jobs(captured: CapturedRuns) -> None:
    tracer = captured.monitor.instrumentation.tracer
    errors = Events()
    raised: list[BaseException] = []

    async def collect_pools() -> CollectionResult:
        with tracer.start_as_current_span("GET /pools"):
            await asyncio.sleep(0)
        run = gecko_otel.current_run()
        assert run is not None
        run.set_metadata("network", "solana")
        return CollectionResult(success=True, records_collected=42)

    async def collect_prices() -> None:
        exc = TimeoutError("price API too slow")
        raised.append(exc)
        raise exc

    def write_candles() -> int:
        return 7

    scheduler = AsyncIOScheduler(timezone=timezone.utc)
    scheduler.add_listener(errors, EVENT_JOB_ERROR)
    scheduler.add_job(collect_pools, "interval", seconds=0.05, id="pool_collector")
    scheduler.add_job(collect_prices, "interval", seconds=0.05, id="price_collector")
    scheduler.add_job(write_candles, "interval", seconds=0.05, id="ohlcv_writer")
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    try:
        await async_wait_until(
            lambda: all(
                captured.runs_of(c) for c in ("pool_collector", "price_collector", "ohlcv_writer")
            )
        )
    finally:
        scheduler.shutdown(wait=False)
        uninstrument_scheduler(scheduler)
        await asyncio.sleep(0.05)  # let cancelled job tasks finish

    [pool_run] = captured.runs_of("pool_collector")[:1]
    assert pool_run.status is ExecutionStatus.SUCCESS
    assert pool_run.records_collected == 42
    assert pool_run.metadata["network"] == "solana"
    pool_span = span_of(captured, pool_run.execution_id)
    assert pool_span.attributes["faas.trigger"] == "timer"
    child = next(
        s
        for s in captured.spans
        if s.name == "GET /pools" and s.context.trace_id == pool_span.context.trace_id
    )
    assert child.parent is not None
    assert child.parent.span_id == pool_span.context.span_id

    [price_run] = captured.runs_of("price_collector")[:1]
    assert price_run.status is ExecutionStatus.TIMEOUT
    assert errors.of(EVENT_JOB_ERROR)[0].exception is raised[0]

    [write_run] = captured.runs_of("ohlcv_writer")[:1]
    assert write_run.status is ExecutionStatus.SUCCESS
    assert span_of(captured, write_run.execution_id).attributes["faas.trigger"] == "timer"


def test_decorated_job_is_not_counted_twice(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    @gecko_otel.collection("decorated_collector")
    def collect() -> int:
        return 1

    scheduler = schedulers()
    executed = Events()
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
    scheduler.add_job(collect, "interval", seconds=0.05, id="job_id")
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    wait_until(lambda: len(executed.of(EVENT_JOB_EXECUTED)) >= 2, what="two executions")
    scheduler.shutdown(wait=True)

    n = len(executed.of(EVENT_JOB_EXECUTED))
    assert len(captured.runs_of("decorated_collector")) == n
    assert captured.runs_of("job_id") == []
    assert len(captured.spans) == n


def test_collector_type_from_a_mapping_or_a_callable(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    first, second = schedulers(), schedulers()
    for scheduler in (first, second):
        scheduler.add_job(lambda: None, "interval", seconds=0.05, id="pools-solana")
        scheduler.add_job(lambda: None, "interval", seconds=0.05, id="other", name="trades")
    instrument_scheduler(first, monitor=captured.monitor, collector_type={"pools-solana": "pool"})
    instrument_scheduler(second, monitor=captured.monitor, collector_type=lambda job: job.name)
    first.start()
    second.start()
    for name in ("pool", "other", "trades"):
        runs_of(captured, name)
    first.shutdown(wait=True)
    second.shutdown(wait=True)
    with pytest.raises(ConfigError, match="collector_type"):
        instrument_scheduler(schedulers(), collector_type="pool")
    with pytest.raises(ConfigError, match="collector_type"):
        instrument_scheduler(schedulers(), collector_type={"job": ""})
    with pytest.raises(ConfigError, match="APScheduler"):
        instrument_scheduler(object())
    with pytest.raises(ConfigError, match="already instrumented"):
        instrument_scheduler(first, monitor=captured.monitor)


def test_job_ids_no_collector_type_could_hold_are_made_usable(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    """A job id with NUL or over 255 characters still gets traced, under a usable name."""
    long_id, other_long_id = "j" * 300, "j" * 299 + "k"
    scheduler = schedulers()
    for job_id in (long_id, other_long_id, "nul\x00id"):
        scheduler.add_job(lambda: "ok", "interval", seconds=0.05, id=job_id)
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    runs_of(captured, "nul\ufffdid")
    wait_until(lambda: len({r.collector_type for r in captured.runs}) == 3, what="three jobs")
    scheduler.shutdown(wait=True)
    names = {run.collector_type for run in captured.runs}
    assert "nul\ufffdid" in names
    long_names = sorted(n for n in names if n.startswith("jjj"))
    assert len(long_names) == 2  # cut to the limit, kept apart by a hash of the whole id
    assert all(len(n) == 255 for n in long_names)


def test_broken_collector_type_callable_never_reaches_the_job(
    captured: CapturedRuns,
    schedulers: Callable[..., BackgroundScheduler],
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    def broken(job: Any) -> str:
        raise KeyError(job.id)

    executed = Events()
    scheduler = schedulers()
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.add_job(lambda: "ok", "interval", seconds=0.05, id="fallback")
    instrument_scheduler(scheduler, monitor=captured.monitor, collector_type=broken)
    scheduler.start()
    runs_of(captured, "fallback")
    scheduler.shutdown(wait=True)
    assert {e.code for e in executed.seen} == {EVENT_JOB_EXECUTED}
    assert {e.retval for e in executed.seen} == {"ok"}
    assert internal_errors
    assert isinstance(internal_errors[0][1], KeyError)


def test_a_scheduled_time_that_cannot_be_read_never_reaches_the_job(
    captured: CapturedRuns,
    schedulers: Callable[..., BackgroundScheduler],
    internal_errors: list[tuple[str, BaseException]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # faas.time is made as each run begins; if making it fails, the job runs anyway.
    def broken(moment: datetime) -> str:
        raise ValueError(moment)

    monkeypatch.setattr(scheduler_hooks, "_iso", broken)
    executed = Events()
    scheduler = schedulers()
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.add_job(lambda: "ok", "interval", seconds=0.05, id="pools")
    instrument_scheduler(scheduler, monitor=captured.monitor)
    scheduler.start()
    wait_until(lambda: executed.seen, what="an execution")
    scheduler.shutdown(wait=True)
    assert {e.code for e in executed.seen} == {EVENT_JOB_EXECUTED}
    assert {e.retval for e in executed.seen} == {"ok"}
    assert isinstance(internal_errors[0][1], ValueError)


# -- expectations -------------------------------------------------------------------


def test_expectations_from_interval_and_cron_triggers(
    captured: CapturedRuns,
    schedulers: Callable[..., BackgroundScheduler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    real_expect = captured.monitor.expect

    def expect(collector_type: str, **kwargs: Any) -> None:
        calls.append((collector_type, kwargs))
        real_expect(collector_type, **kwargs)

    monkeypatch.setattr(captured.monitor, "expect", expect)
    scheduler = schedulers()
    noop = "builtins:print"
    scheduler.add_job(noop, "interval", minutes=5, id="pool_collector", misfire_grace_time=30)
    scheduler.add_job(
        noop,
        CronTrigger(minute="*/15", hour="8-18", day_of_week="mon-fri", timezone="Europe/Berlin"),
        id="ohlcv_collector",
        misfire_grace_time=None,
    )
    scheduler.add_job(noop, "interval", hours=1, id="jittery", jitter=20)
    scheduler.add_job(noop, CronTrigger(second="*/10"), id="seconds")  # no crontab form
    scheduler.add_job(noop, "date", run_date=datetime(2099, 1, 1, tzinfo=timezone.utc), id="once")
    scheduler.add_job(noop, "interval", minutes=1, id="paused", next_run_time=None)
    instrument_scheduler(scheduler, monitor=captured.monitor)
    assert calls == []  # pending jobs: declared when the scheduler adds them
    scheduler.start()
    scheduler.add_job(noop, "cron", hour=3, id="nightly", misfire_grace_time=600)

    declared = dict(calls)
    assert set(declared) == {"pool_collector", "ohlcv_collector", "jittery", "nightly"}
    pool_first_due = declared["pool_collector"].pop("first_due")
    assert pool_first_due is not None  # the job's next run time
    assert declared["pool_collector"] == {
        "every": timedelta(minutes=5),
        "cron": None,
        "grace": timedelta(seconds=30),
        "max_runtime": None,
        "timezone": None,
    }
    assert declared["ohlcv_collector"]["cron"] == "*/15 8-18 * * 1,2,3,4,5"
    assert declared["ohlcv_collector"]["every"] is None
    assert declared["ohlcv_collector"]["grace"] == timedelta(seconds=60)
    assert str(declared["ohlcv_collector"]["timezone"]) == "Europe/Berlin"
    assert declared["jittery"]["grace"] == timedelta(seconds=1 + 20)  # default misfire + jitter
    assert declared["nightly"]["cron"] == "0 3 * * *"
    assert declared["nightly"]["grace"] == timedelta(seconds=600)

    expectations = captured.monitor.export()["expectations"]
    assert expectations["pool_collector"]["every"] == 300
    assert expectations["ohlcv_collector"]["cron"] == "*/15 8-18 * * 1,2,3,4,5"
    assert "once" not in expectations
    assert "seconds" not in expectations

    # Changes re-declare; pausing keeps the expectation (so missed runs show).
    calls.clear()
    scheduler.pause_job("pool_collector")
    scheduler.resume_job("paused")
    scheduler.reschedule_job("jittery", trigger="interval", minutes=10)
    assert [c for c, _ in calls] == ["paused", "jittery"]
    assert dict(calls)["jittery"]["every"] == timedelta(minutes=10)
    assert captured.monitor.export()["expectations"]["pool_collector"]["every"] == 300


def test_paused_job_raises_missed_run_through_its_expectation(
    schedulers: Callable[..., BackgroundScheduler],
) -> None:
    clock = FakeClock()
    with capture_runs(clock=clock, watchdog=False) as captured:
        scheduler = schedulers()
        scheduler.add_job(lambda: None, "interval", seconds=0.1, id="token_collector")
        instrument_scheduler(scheduler, monitor=captured.monitor)
        scheduler.start()
        runs_of(captured, "token_collector")
        scheduler.pause_job("token_collector")
        clock.advance(5)  # interval 0.1 s + grace 1 s long gone
        captured.monitor.evaluate()
        [alert] = captured.monitor.alerts(collector_type="token_collector")
        assert alert.rule == "missed_run"

        before = len(captured.runs_of("token_collector"))
        scheduler.resume_job("token_collector")
        runs_of(captured, "token_collector", before + 1)
        captured.monitor.evaluate()
        assert captured.monitor.alerts(collector_type="token_collector") == []
        scheduler.shutdown(wait=True)
        uninstrument_scheduler(scheduler)


CRON_SPECS = [
    {"minute": "*/5", "hour": "9-17"},
    {"minute": 0, "hour": 9, "day_of_week": "mon-fri"},
    {"hour": 3, "day_of_week": "sun"},
    {"day_of_week": "*/2", "hour": 1},
    {"month": "jan,jun-aug", "day": 1, "hour": 0},
    {"minute": "5/10"},
    {"minute": "0,30", "hour": "*/2", "day": "1-15"},
]


@pytest.mark.parametrize(
    "spec", CRON_SPECS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items())
)
def test_crontab_fires_exactly_when_the_cron_trigger_does(spec: dict[str, Any]) -> None:
    trigger = CronTrigger(timezone=timezone.utc, **spec)
    crontab = crontab_of(trigger)
    assert crontab is not None
    moment = datetime(2024, 2, 27, 23, 58, tzinfo=timezone.utc)
    fires = cronsim.CronSim(crontab, moment)
    for _ in range(300):
        expected = trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))
        assert next(fires) == expected
        moment = expected


@pytest.mark.parametrize(
    "spec",
    [
        {"second": "*/10"},
        {"day": "last"},
        {"day": "1st mon"},
        {"day": 1, "day_of_week": "mon"},  # cron would OR these; APScheduler ANDs them
        {"year": 2030},
        {"week": 5},
    ],
)
def test_cron_triggers_without_a_crontab_form_get_none(spec: dict[str, Any]) -> None:
    assert crontab_of(CronTrigger(timezone=timezone.utc, **spec)) is None


# -- process pools ----------------------------------------------------------------


def test_process_pool_jobs_run_untraced_and_unbroken(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    scheduler = schedulers(executors={"default": ProcessPoolExecutor(1)})
    executed = Events()
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    # A stdlib callable, so the worker imports nothing of ours to find it.
    scheduler.add_job(
        eval,
        "interval",
        args=["(__import__('os').getpid(), 'gecko_otel' in __import__('sys').modules)"],
        minutes=10,
        next_run_time=datetime.now(timezone.utc),
        misfire_grace_time=None,  # a slow machine may take seconds to spawn the worker
        id="in_a_worker",
    )
    instrument_scheduler(scheduler, monitor=captured.monitor)
    # What a process pool ships to its workers is APScheduler's own run_job.
    shipped = pickle.loads(pickle.dumps(pool_executors.run_job))
    assert shipped.func is base_executors.run_job
    scheduler.start()
    wait_until(lambda: executed.seen, timeout=15, what="the process pool job")
    scheduler.shutdown(wait=True)

    [event] = executed.seen
    assert event.code == EVENT_JOB_EXECUTED
    worker_pid, worker_imported_gecko_otel = event.retval
    assert worker_pid != os.getpid()
    assert not worker_imported_gecko_otel
    assert captured.runs == []
    assert "in_a_worker" not in captured.monitor.export()["expectations"]


# -- instrument / uninstrument ---------------------------------------------------------


def test_instrument_uninstrument_reinstrument_leaves_apscheduler_as_it_was(
    captured: CapturedRuns, schedulers: Callable[..., BackgroundScheduler]
) -> None:
    scheduler = schedulers()
    executed = Events()
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
    scheduler.add_job(lambda: None, "interval", seconds=0.05, id="tick")
    listeners = list(scheduler._listeners)

    instrument_scheduler(scheduler, monitor=captured.monitor)
    instrument_scheduler(scheduler, monitor=captured.monitor)  # same options: nothing new
    assert is_instrumented(scheduler)
    assert pool_executors.run_job is not ORIGINALS[pool_executors, "run_job"]
    assert (
        asyncio_executors.run_coroutine_job is not ORIGINALS[asyncio_executors, "run_coroutine_job"]
    )
    assert base_executors.run_job is ORIGINALS[base_executors, "run_job"]
    assert len(scheduler._listeners) == len(listeners) + 1
    scheduler.start()
    runs_of(captured, "tick")

    assert uninstrument_scheduler(scheduler)
    assert not uninstrument_scheduler(scheduler)
    assert not is_instrumented(scheduler)
    assert untouched()
    assert scheduler._listeners == listeners
    # Once two more executions have ended, whatever was running has finished; from
    # then on nothing is recorded.
    seen = len(executed.of(EVENT_JOB_EXECUTED))
    wait_until(lambda: len(executed.of(EVENT_JOB_EXECUTED)) >= seen + 2, what="executions")
    count = len(captured.runs_of("tick"))
    seen = len(executed.of(EVENT_JOB_EXECUTED))
    wait_until(lambda: len(executed.of(EVENT_JOB_EXECUTED)) >= seen + 2, what="executions")
    assert len(captured.runs_of("tick")) == count

    instrument_scheduler(scheduler, monitor=captured.monitor)
    runs_of(captured, "tick", count + 1)
    scheduler.shutdown(wait=True)
    assert uninstrument_scheduler(scheduler)
    assert untouched()
    assert scheduler._listeners == listeners


def test_instrumentor_instruments_every_scheduler_that_starts(
    captured: CapturedRuns,
    schedulers: Callable[..., BackgroundScheduler],
    instrumentor: APSchedulerInstrumentor,
) -> None:
    assert list(instrumentor.instrumentation_dependencies()) == ["apscheduler >= 3.6, < 4"]
    before = schedulers()
    before.add_job(lambda: None, "interval", seconds=0.05, id="before")
    listeners = list(before._listeners)

    instrumentor.instrument(monitor=captured.monitor)
    instrumentor.instrument(monitor=captured.monitor)  # idempotent
    assert APSchedulerInstrumentor() is instrumentor
    assert BaseScheduler.start is not ORIGINALS[BaseScheduler, "start"]
    before.start()
    assert is_instrumented(before)
    runs_of(captured, "before")
    before.shutdown(wait=True)

    instrumentor.uninstrument()
    assert untouched()
    assert not is_instrumented(before)
    assert before._listeners == listeners

    after = schedulers()
    after.add_job(lambda: None, "interval", seconds=0.05, id="after")
    after.start()
    assert not is_instrumented(after)

    instrumentor.instrument(monitor=captured.monitor)  # and again
    later = schedulers()
    later.add_job(lambda: None, "interval", seconds=0.05, id="later")
    later.start()
    runs_of(captured, "later")
    assert captured.runs_of("after") == []
    later.shutdown(wait=True)
    instrumentor.uninstrument()
    assert untouched()


# -- the entry point and opentelemetry-instrument ----------------------------------------


def _entry_point() -> metadata.EntryPoint | None:
    found = metadata.entry_points(group="opentelemetry_instrumentor", name="apscheduler")
    return next(iter(found), None)


def _require_entry_point() -> metadata.EntryPoint:
    entry_point = _entry_point()
    if entry_point is None:
        pytest.skip(
            "the opentelemetry_instrumentor entry point 'apscheduler' is not installed yet: "
            "add it to pyproject.toml and reinstall (pip install -e .)"
        )
    return entry_point


def test_entry_point_names_the_instrumentor() -> None:
    entry_point = _require_entry_point()
    assert entry_point.value == "gecko_otel.scheduling.apscheduler:APSchedulerInstrumentor"
    assert entry_point.load() is APSchedulerInstrumentor


PROGRAM = """
import json, sys, time
from apscheduler.schedulers.background import BackgroundScheduler
import gecko_otel

if "--instrument" in sys.argv:
    from gecko_otel.scheduling.apscheduler import APSchedulerInstrumentor
    APSchedulerInstrumentor().instrument()

def collect_pools():
    return 3

scheduler = BackgroundScheduler(timezone="UTC")
scheduler.add_job(collect_pools, "interval", seconds=0.1, id="pool_collector")
scheduler.start()
time.sleep(1)
scheduler.shutdown()
monitor = gecko_otel.get_monitor()
print(json.dumps(None if monitor is None else [r.to_dict() for r in monitor.history()]))
"""


def _run_program(tmp_path: Path, *args: str, auto: bool = False, **env: str) -> Any:
    """Run PROGRAM in a fresh interpreter (global OTel providers stay out of this one)."""
    command = [sys.executable]
    if auto:
        script = VENV_BIN / "opentelemetry-instrument"
        if not script.exists():
            skip_or_fail(f"{script} is missing (pip install opentelemetry-instrumentation)")
        command = [str(script), sys.executable]
    program = tmp_path / "app.py"
    program.write_text(PROGRAM)
    environment = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    environment.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    done = subprocess.run(
        [*command, str(program), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a whole program under opentelemetry-instrument, in a subprocess
def test_instrumentor_creates_the_global_monitor_if_there_is_none(tmp_path: Path) -> None:
    history = _run_program(tmp_path, "--instrument")
    assert history, "the instrumentor recorded no runs"
    assert {r["collector_type"] for r in history} == {"pool_collector"}
    assert {r["status"] for r in history} == {"success"}
    assert _run_program(tmp_path) is None  # not instrumented: no Monitor, no runs


@pytest.mark.slow  # a whole program under opentelemetry-instrument, in a subprocess
def test_opentelemetry_instrument_traces_an_unmodified_program(tmp_path: Path) -> None:
    _require_entry_point()
    history = _run_program(tmp_path, auto=True)
    assert history, "no runs recorded under opentelemetry-instrument"
    assert {r["collector_type"] for r in history} == {"pool_collector"}
    assert {r["status"] for r in history} == {"success"}


@pytest.mark.slow  # a whole program under opentelemetry-instrument, in a subprocess
def test_disabled_instrumentations_turn_it_off(tmp_path: Path) -> None:
    _require_entry_point()
    history = _run_program(tmp_path, auto=True, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="apscheduler")
    assert history is None


def test_removed_job_withdraws_its_expectation() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from gecko_otel.scheduling.apscheduler import instrument_scheduler, uninstrument_scheduler
    from gecko_otel.testing import capture_runs

    with capture_runs(watchdog=False) as captured:
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        instrument_scheduler(scheduler, monitor=captured.monitor)
        scheduler.start(paused=True)
        try:
            scheduler.add_job(lambda: None, "interval", minutes=5, id="retired")
            scheduler.add_job(lambda: None, "interval", minutes=5, id="kept")
            assert captured.monitor.expectation("retired") is not None
            scheduler.remove_job("retired")
            assert captured.monitor.expectation("retired") is None
            assert captured.monitor.expectation("kept") is not None
            uninstrument_scheduler(scheduler)
            assert captured.monitor.expectation("kept") is None
        finally:
            scheduler.shutdown(wait=False)


def test_shared_collector_type_and_remove_all_jobs() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from gecko_otel.scheduling.apscheduler import instrument_scheduler, uninstrument_scheduler
    from gecko_otel.testing import capture_runs

    with capture_runs(watchdog=False) as captured:
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        instrument_scheduler(
            scheduler, monitor=captured.monitor, collector_type={"a": "pools", "b": "pools"}
        )
        scheduler.start(paused=True)
        try:
            scheduler.add_job(lambda: None, "interval", minutes=5, id="a")
            scheduler.add_job(lambda: None, "interval", minutes=5, id="b")
            scheduler.add_job(lambda: None, "interval", minutes=5, id="c")
            scheduler.remove_job("a")  # "b" still runs as pools
            assert captured.monitor.expectation("pools") is not None
            scheduler.remove_all_jobs()
            assert captured.monitor.expectation("pools") is None
            assert captured.monitor.expectation("c") is None
        finally:
            uninstrument_scheduler(scheduler)
            scheduler.shutdown(wait=False)
