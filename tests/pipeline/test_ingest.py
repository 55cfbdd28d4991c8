"""Quiet runs wait in a short batch; anything that matters is processed at once, in order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gecko_otel import Alert, ExecutionStatus, MonitorConfig
from gecko_otel._pipeline.ingest import BATCH
from gecko_otel._values.records import FinishedRun
from gecko_otel.testing import FakeClock, capture_runs
from support.runs import run
from support.store_helpers import finished

#: A baseline ready after one run: while it warms up, every run is processed at once.
WARM = MonitorConfig(anomaly_warmup_runs=1)


def test_quiet_runs_wait_and_any_query_sees_them() -> None:
    with capture_runs(WARM, watchdog=False) as captured:
        ingest = captured.monitor._pipeline._ingest
        run("pools")  # a first run is processed at once: it registers the collector
        assert len(ingest._pending) == 0
        for _ in range(5):
            run("pools")
        assert len(ingest._pending) == 5
        assert captured.monitor.statistics("pools").total_executions == 6
        assert len(ingest._pending) == 0


def test_a_full_batch_is_processed_by_the_run_that_fills_it() -> None:
    with capture_runs(WARM, watchdog=False) as captured:
        ingest = captured.monitor._pipeline._ingest
        run("pools")
        for _ in range(BATCH - 1):
            run("pools")
        assert len(ingest._pending) == BATCH - 1
        run("pools")
        assert len(ingest._pending) == 0


def test_runs_that_matter_go_through_at_once_after_those_waiting() -> None:
    clock = FakeClock()
    config = MonitorConfig(max_consecutive_failures=2, min_runs_for_rate=1000)
    with capture_runs(config, clock=clock, watchdog=False) as captured:
        monitor = captured.monitor
        run("pools")
        run("pools")  # waits
        run("pools", fail=True)  # processed now, after the waiting success
        run("pools", fail=True)
        assert len(monitor._pipeline._ingest._pending) == 0
        [alert] = monitor._pipeline.engine.alerts(
            level=None, collector_type=None, active_only=True, now=clock.now
        )
        assert alert.rule == "consecutive_failures"
        run("pools")  # the collector has an active alert: at once, and it resolves
        assert len(monitor._pipeline._ingest._pending) == 0
        assert monitor._pipeline.engine.has_active("pools") is False
        statuses = [r.status for r in reversed(monitor.history("pools"))]
        assert statuses == [
            ExecutionStatus.SUCCESS,
            ExecutionStatus.SUCCESS,
            ExecutionStatus.FAILURE,
            ExecutionStatus.FAILURE,
            ExecutionStatus.SUCCESS,
        ]


def test_batched_runs_keep_the_time_they_ended() -> None:
    clock = FakeClock()
    with capture_runs(WARM, clock=clock, watchdog=False) as captured:
        run("pools")
        ended = clock.now + 10
        clock.advance(10)
        run("pools")  # quiet: waits in the batch
        assert len(captured.monitor._pipeline._ingest._pending) == 1
        clock.advance(3000)  # processed much later, by this query
        health = captured.monitor.health("pools")["pools"]
        assert health.last_success is not None
        assert health.last_success.timestamp() == pytest.approx(ended)


def test_a_success_that_moves_the_window_is_processed_at_once() -> None:
    clock = FakeClock()
    with capture_runs(WARM, clock=clock, watchdog=False) as captured:
        run("pools")
        clock.advance(3600)  # a later bucket
        run("pools")
        assert len(captured.monitor._pipeline._ingest._pending) == 0


@pytest.mark.parametrize(
    "config",
    [
        MonitorConfig(max_execution_time=1e-9),  # every run is slow
        MonitorConfig(min_records_per_second=1.0),  # a throughput rule is on
    ],
)
def test_no_batching_when_a_success_can_raise_an_alert(config: MonitorConfig) -> None:
    with capture_runs(config, watchdog=False) as captured:
        for _ in range(3):
            run("pools")
        assert len(captured.monitor._pipeline._ingest._pending) == 0


def test_the_watchdog_tick_drains() -> None:
    with capture_runs(WARM, watchdog=False) as captured:
        run("pools")
        run("pools")
        assert len(captured.monitor._pipeline._ingest._pending) == 1
        captured.monitor.evaluate()
        assert len(captured.monitor._pipeline._ingest._pending) == 0


def _fed_runs(start: datetime) -> list[tuple[float, FinishedRun]]:
    """Three collectors' runs, interleaved in streaks, with records and durations that
    vary, a failure and an empty run now and then; each with the seconds before it."""
    out = []
    names = ("pools", "trades", "tokens")
    for i in range(600):
        name = names[(i // 7) % 3] if i % 11 else names[i % 3]
        status = ExecutionStatus.FAILURE if i % 97 == 96 else ExecutionStatus.SUCCESS
        records = 0 if i % 53 == 52 else 100 + (i * 37) % 61
        out.append(
            (
                0.5 + (i % 5) * 0.25,
                finished(
                    name,
                    start + timedelta(seconds=i),
                    status=status,
                    duration=0.05 + ((i * 13) % 17) / 100,
                    records=records,
                ),
            )
        )
    return out


def _seen(alert: Alert) -> tuple[object, ...]:
    """What a handler sees of a notification, but the alert's random id."""
    return (
        alert.level,
        alert.collector_type,
        alert.rule,
        alert.message,
        dict(alert.metadata),
        alert.timestamp,
        alert.state,
        alert.resolved_at,
    )


def test_runs_counted_in_batches_come_out_as_counted_one_by_one() -> None:
    # The same runs, at the same times, through a batching Monitor and one that
    # processes every run at once: health, baselines, statistics, history and alerts agree.
    config = MonitorConfig(anomaly_warmup_runs=5, max_consecutive_failures=1)
    fed = _fed_runs(datetime(2026, 1, 1, tzinfo=timezone.utc))
    batched_clock = FakeClock()
    single_clock = FakeClock()
    single_clock.now = batched_clock.now
    with (
        capture_runs(config, clock=batched_clock, watchdog=False) as batched,
        capture_runs(config, clock=single_clock, watchdog=False) as single,
    ):
        single.monitor._pipeline._ingest.batching = False
        for monitor in (batched.monitor, single.monitor):
            monitor.expect("trades", every=60, max_runtime=30)
        waited = 0
        for gap, record in fed:
            batched_clock.advance(gap)
            single_clock.advance(gap)
            for monitor in (batched.monitor, single.monitor):
                if record.collector_type == "trades":  # its runs start, then end
                    monitor._pipeline.run_started("trades", record.execution_id)
                monitor._pipeline.add(record)
            waited = max(waited, len(batched.monitor._pipeline._ingest._pending))
        assert waited > 10  # quiet runs did wait, several collectors' at a time
        # Every run of "trades" ended: none may be seen running past max_runtime.
        batched_clock.advance(31)
        single_clock.advance(31)
        for monitor in (batched.monitor, single.monitor):
            monitor.evaluate()
        assert [_seen(a) for a in batched.notifications] == [_seen(a) for a in single.notifications]
        assert single.notifications  # the failures alerted
        for name in ("pools", "trades", "tokens"):
            got, want = batched.monitor.health(name)[name], single.monitor.health(name)[name]
            assert got == want
            assert batched.monitor.statistics(name) == single.monitor.statistics(name)
            assert batched.monitor.history(name) == single.monitor.history(name)
            got_baseline = batched.monitor._pipeline.evaluator.existing_state(name).baseline
            want_baseline = single.monitor._pipeline.evaluator.existing_state(name).baseline
            assert got_baseline.usual() == want_baseline.usual()


def test_an_anomaly_that_holds_only_inside_a_batch_alerts() -> None:
    # Runs judged quiet when they ended, against the baseline as it stood then; by the
    # time they are counted, the runs before them moved it and three are low in a row.
    config = MonitorConfig(anomaly_warmup_runs=1)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    records = [100, 1000, 1000, 1000, 1000, 300, 300, 300, 1000]
    seen = {}
    for batching in (True, False):
        clock = FakeClock()
        with capture_runs(config, clock=clock, watchdog=False) as captured:
            pipeline = captured.monitor._pipeline
            pipeline._ingest.batching = batching
            for i, n in enumerate(records):
                clock.advance(1)
                pipeline.add(finished("pools", start + timedelta(seconds=i), records=n))
            waited = len(pipeline._ingest._pending)
            captured.monitor.evaluate()
            seen[batching] = [(a.rule, a.state, a.message) for a in captured.notifications]
        assert waited == (len(records) - 1 if batching else 0)
    assert [(rule, state.value) for rule, state, _ in seen[False]] == [
        ("records_anomaly", "firing"),
        ("records_anomaly", "resolved"),
    ]
    assert seen[True] == seen[False]
