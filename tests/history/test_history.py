"""History, statistics, sampled-out runs, active runs and export."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased

import gecko_otel
from gecko_otel import ConfigError, ExecutionStatus, MonitorConfig, track_collection
from gecko_otel._history.memory import Aggregate, History
from gecko_otel._values.records import ExecutionRecord, FinishedRun
from gecko_otel.testing import CapturedRuns, capture_runs
from support.runs import run

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def record(
    collector: str, n: int, status: ExecutionStatus = ExecutionStatus.SUCCESS, **kw: Any
) -> FinishedRun:
    """A finished run started ``n`` seconds after T0, as the processor hands it over."""
    start = T0 + timedelta(seconds=n)
    duration = kw.pop("duration", 1.0)
    return FinishedRun.from_record(
        ExecutionRecord(
            collector_type=collector,
            execution_id=f"{collector}-{n}",
            status=status,
            start_time=start,
            end_time=start + timedelta(seconds=duration or 0),
            duration_seconds=duration,
            **kw,
        )
    )


def test_history_newest_first_with_filters(captured: CapturedRuns) -> None:
    for i in range(5):
        run("pools", records=i, fail=i == 3)
    run("trades", records=100)
    monitor = captured.monitor
    pools = monitor.history("pools")
    assert [r.records_collected for r in pools] == [4, 3, 2, 1, 0]
    assert monitor.history()[0].collector_type == "trades"
    assert len(monitor.history()) == 6
    assert [r.records_collected for r in monitor.history("pools", limit=2)] == [4, 3]
    assert [r.records_collected for r in monitor.history(status="failure")] == [3]
    assert monitor.history(status=ExecutionStatus.PARTIAL) == []
    assert monitor.history("pools", since=pools[1].start_time) == pools[:2]
    assert monitor.history("unknown") == []
    assert monitor.collector_types() == ["pools", "trades"]


def test_history_is_bounded_but_statistics_keep_counting() -> None:
    with capture_runs(MonitorConfig(max_history_per_collector=10)) as local:
        for i in range(25):
            run("pools", records=1, fail=i % 5 == 0)
        assert len(local.monitor.history("pools")) == 10
        stats = local.monitor.statistics("pools")
    assert stats.total_executions == 25
    assert stats.failed_executions == 5
    assert stats.successful_executions == 20
    assert stats.success_rate == 80.0
    assert stats.total_records_collected == 25


def test_statistics_figures_from_aggregates() -> None:
    history = History(MonitorConfig())
    durations = [0.1 * (i + 1) for i in range(100)]  # 0.1 .. 10.0 s
    for i, duration in enumerate(durations):
        status = ExecutionStatus.PARTIAL if i % 10 == 0 else ExecutionStatus.SUCCESS
        history.add(record("pools", i, status, duration=duration, records_collected=10))
    history.add(record("pools", 200, ExecutionStatus.FAILURE, duration=2.0))
    history.add(record("pools", 201, ExecutionStatus.MISSED, duration=None))
    stats = history.statistics("pools")
    assert stats.total_executions == 102
    assert stats.successful_executions == 90
    assert stats.partial_executions == 10
    assert stats.failed_executions == 1
    assert stats.missed_executions == 1
    assert stats.success_rate == pytest.approx(100 * 100 / 102)
    assert stats.average_duration == pytest.approx((sum(durations) + 2.0) / 101)
    assert stats.p50_duration == pytest.approx(5.0, rel=0.02)
    assert stats.p95_duration == pytest.approx(9.6, rel=0.02)
    assert stats.total_records_collected == 1000
    assert stats.records_per_second == pytest.approx(1000 / (sum(durations) + 2.0))
    assert stats.first_execution == T0
    assert stats.last_execution == T0 + timedelta(seconds=201)
    empty = history.statistics("nothing")
    assert empty.total_executions == 0
    assert empty.success_rate == 0.0
    assert empty.p95_duration == 0.0


def test_statistics_for_all_collectors_merge() -> None:
    history = History(MonitorConfig())
    history.add(record("a", 1, records_collected=3))
    history.add(record("b", 2, ExecutionStatus.FAILURE, records_collected=4))
    stats = history.statistics()
    assert stats.collector_type is None
    assert stats.total_executions == 2
    assert stats.success_rate == 50.0
    assert stats.total_records_collected == 7


def test_statistics_window_uses_recent_runs() -> None:
    history = History(MonitorConfig())
    for i in range(10):
        status = ExecutionStatus.SUCCESS if i < 8 else ExecutionStatus.FAILURE
        history.add(record("pools", i * 3600, status))
    now = T0 + timedelta(hours=9, minutes=30)
    stats = history.statistics("pools", window=timedelta(hours=2), now=now)
    assert stats.total_executions == 2
    assert stats.failed_executions == 2
    assert stats.window_seconds == 7200
    assert history.statistics("pools", window=3600 * 24, now=now).total_executions == 10


def test_statistics_are_running_aggregates_not_rescans(monkeypatch: pytest.MonkeyPatch) -> None:
    history = History(MonitorConfig(max_history_per_collector=100_000))
    for i in range(20_000):
        history.add(record("pools", i))
    calls = []
    original = Aggregate.add

    def counting_add(self: Aggregate, rec: FinishedRun) -> None:
        calls.append(rec)
        original(self, rec)

    monkeypatch.setattr(Aggregate, "add", counting_add)
    assert history.statistics("pools").total_executions == 20_000
    assert history.statistics().total_executions == 20_000
    assert calls == []  # no record was revisited


def test_sampled_out_runs_still_reach_history() -> None:
    with capture_runs(sampler=ALWAYS_OFF) as local:
        for i in range(20):
            run("pools", records=2, fail=i == 0)
        assert local.spans == ()  # export follows the sampler
        stats = local.monitor.statistics("pools")
        assert stats.total_executions == 20
        assert stats.failed_executions == 1
        assert stats.total_records_collected == 40
        durations = local.metrics()["gecko.collection.duration"]
        assert sum(point.count for _, point in durations) == 20


def test_partly_sampled_runs_export_only_sampled() -> None:
    with capture_runs(sampler=TraceIdRatioBased(0.5)) as local:
        for _ in range(400):
            run("pools")
        exported = len(local.spans)
        assert local.monitor.statistics("pools").total_executions == 400
    assert 100 < exported < 300


def test_active_runs_and_export(captured: CapturedRuns) -> None:
    inside = threading.Event()
    release = threading.Event()

    @gecko_otel.collection("slow", metadata={"network": "eth"})
    def slow() -> None:
        gecko_otel.current_run().add_records(2)  # type: ignore[union-attr]
        inside.set()
        release.wait(5)

    thread = threading.Thread(target=slow)
    thread.start()
    assert inside.wait(5)
    [active] = captured.monitor.active_runs()
    assert active.collector_type == "slow"
    assert active.records_collected == 2
    assert active.start_time is not None
    snapshot = captured.monitor.export()
    assert snapshot["active_runs"][0]["status"] == "running"
    release.set()
    thread.join()
    run("pools", records=3, warn=True)
    assert captured.monitor.active_runs() == []
    exported = json.loads(json.dumps(captured.monitor.export()))
    assert exported["active_runs"] == []
    assert exported["statistics"]["total_executions"] == 2
    pools = exported["collectors"]["pools"]
    assert pools["statistics"]["partial_executions"] == 1
    assert pools["history"][0]["warnings"] == ["w"]
    assert exported["collectors"]["slow"]["history"][0]["metadata"] == {"network": "eth"}
    assert exported["internal"]["records_every_run"] is True


def test_export_includes_a_configured_collectors_first_run() -> None:
    config = MonitorConfig(collectors={"pools": gecko_otel.CollectorThresholds()})
    with capture_runs(config, watchdog=False) as captured:
        run("pools")
        exported = captured.monitor.export()
    assert exported["collectors"]["pools"]["statistics"]["total_executions"] == 1


def test_max_collectors_bounds_memory_and_counts_evictions() -> None:
    with capture_runs(MonitorConfig(max_collectors=3)) as local:
        for i in range(10):
            run(f"dynamic_{i}")
        assert local.monitor.collector_types() == ["dynamic_7", "dynamic_8", "dynamic_9"]
        assert local.monitor.export()["internal"]["evicted_collectors"] == 7
        assert len(local.spans) == 10  # spans and metrics still flow


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"status": "exploded"}, "unknown status 'exploded'"),
        ({"since": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"since": "yesterday"}, "since must be a datetime"),
    ],
)
def test_history_argument_errors(captured: CapturedRuns, kwargs: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        captured.monitor.history(**kwargs)


@pytest.mark.parametrize("window", [0, -5, timedelta(0), "1h", True])
def test_statistics_window_errors(captured: CapturedRuns, window: Any) -> None:
    with pytest.raises(ConfigError, match="window"):
        captured.monitor.statistics(window=window)


def test_percentiles_near_one_second_are_not_zero() -> None:
    history = History(MonitorConfig())
    for i, duration in enumerate((0.99, 1.0, 0.995, 0.0, 1e-12)):
        history.add(record("pools", i, duration=duration))
    stats = history.statistics("pools")
    assert stats.p50_duration == pytest.approx(0.99, rel=0.02)
    assert stats.p95_duration == pytest.approx(1.0, rel=0.02)
    assert history.statistics("pools", window=None).total_executions == 5


def test_fork_child_forgets_runs_of_other_threads(captured: CapturedRuns) -> None:
    import os

    inside = threading.Event()
    release = threading.Event()

    def background() -> None:
        with track_collection("background"):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=background)
    thread.start()
    assert inside.wait(5)
    with track_collection("forking"):
        pid = os.fork()
        if pid == 0:  # the child: only the forking thread's run is still active
            names = [run.collector_type for run in captured.monitor.active_runs()]
            os._exit(0 if names == ["forking"] else 1)
    release.set()
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(r.collector_type for r in captured.runs) == ["background", "forking"]


def test_make_record_matches_the_dataclass_constructor() -> None:
    from dataclasses import fields

    from gecko_otel._values.records import make_record

    kwargs = {
        "collector_type": "c",
        "execution_id": "e",
        "status": ExecutionStatus.PARTIAL,
        "start_time": T0,
        "end_time": T0 + timedelta(seconds=1),
        "duration_seconds": 1.0,
        "records_collected": 3,
        "errors": ("e1",),
        "warnings": ("w1",),
        "metadata": {"k": "v"},
        "error_type": "X",
        "error_message": "m",
        "trace_id": "t" * 32,
        "span_id": "s" * 16,
        "dropped_messages": 2,
    }
    assert [f.name for f in fields(ExecutionRecord)] == list(kwargs)
    assert make_record(*kwargs.values()) == ExecutionRecord(**kwargs)
    with pytest.raises(ValueError, match="zip"):
        make_record("too", "few")


def test_runs_of_this_process_are_ordered_by_their_monotonic_start() -> None:
    # The wall clock stepped back an hour between the second run and the third:
    # their wall-clock starts say the opposite of the order they ran in.
    history = History(MonitorConfig())
    history.restore([record("pools", -7200), record("trades", -7100), record("pools", -7000)])
    for n, (collector, wall) in enumerate([("pools", 10), ("trades", 20), ("pools", -3590)]):
        history.add(record(collector, wall)._replace(start_mono=100.0 + n))
    newest = ["pools--3590", "trades-20", "pools-10", "pools--7000", "trades--7100", "pools--7200"]
    assert [r.execution_id for r in history.records()] == newest
    assert [r.execution_id for r in history.records(limit=2)] == newest[:2]
    assert [r.execution_id for r in history.records("pools")] == [
        i for i in newest if i.startswith("pools")
    ]
