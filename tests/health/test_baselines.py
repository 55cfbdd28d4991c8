"""Adaptive baselines: records_anomaly, duration_anomaly and no_data, judged
against each collector's own history (gecko_otel._health.baseline)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gecko_otel import AlertLevel, CollectionStatus, CollectorThresholds, MonitorConfig
from gecko_otel._health.rules import HealthEvaluator
from gecko_otel._values.records import ExecutionStatus
from gecko_otel.testing import FakeClock
from support.runs import watched

OK = ExecutionStatus.SUCCESS
T0 = 1_750_000_000.0
EVERY = 300.0  # a run every five minutes


class Runs:
    """Feeds runs of one collector to an evaluator, five minutes apart."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("min_runs_for_rate", 10**6)
        self.evaluator = HealthEvaluator(MonitorConfig(**config))
        self.now = T0

    def run(self, records: int, duration: float = 2.0, status: ExecutionStatus = OK) -> list[str]:
        self.now += EVERY
        held = self.evaluator.observe("pools", status, duration, records, self.now)
        return [c.rule for c in held]

    def normal(self, n: int, rng: random.Random, median: float = 500.0) -> None:
        for _ in range(n):
            assert (
                self.run(int(median * rng.lognormvariate(0, 0.3)), 2 * rng.lognormvariate(0, 0.2))
                == []
            )

    def conditions(self) -> dict[str, Any]:
        return {c.rule: c for c in self.evaluator.conditions("pools", self.now)}


def test_a_volume_collapse_fires_on_the_third_run_and_escalates() -> None:
    runs = Runs()
    runs.normal(40, random.Random(1))
    assert runs.run(3) == []
    assert runs.run(4) == []
    assert runs.run(2) == ["records_anomaly"]
    anomaly = runs.conditions()["records_anomaly"]
    assert anomaly.level is AlertLevel.WARNING
    assert anomaly.message.startswith("collected 2 records; its usual is ")
    assert anomaly.message.endswith("(3 runs in a row)")
    figures = anomaly.figures
    assert figures["records"] == 2 and figures["runs_in_a_row"] == 3
    assert 400 < figures["usual_records"] < 600
    assert figures["usual_low"] < figures["usual_records"] < figures["usual_high"]
    for _ in range(3):
        runs.run(0)  # empty runs count too
    assert runs.conditions()["records_anomaly"].level is AlertLevel.CRITICAL


def test_the_warm_up_holds_fire() -> None:
    runs = Runs(anomaly_warmup_runs=20)
    runs.normal(10, random.Random(2))
    for _ in range(9):  # runs 11 to 19: still learning
        assert runs.run(1) == []
    runs.normal(1, random.Random(3))  # run 20
    assert runs.run(1) == runs.run(1) == []
    assert runs.run(1) == ["records_anomaly"]


def test_a_normal_run_ends_the_streak() -> None:
    runs = Runs()
    runs.normal(30, random.Random(4))
    runs.run(5)
    runs.run(5)
    runs.normal(1, random.Random(5))
    assert runs.run(5) == runs.run(5) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3), min_size=30, max_size=200))
def test_a_collector_that_usually_collects_nothing_never_fires(values: list[int]) -> None:
    # Mostly empty runs, with a few records now and then.
    runs = Runs(anomaly_warmup_runs=5)
    for i, value in enumerate(values):
        assert "records_anomaly" not in runs.run(value if i % 4 == 0 else 0)


@pytest.mark.parametrize("median", [3.0, 500.0, 1e5])
def test_noise_alone_rarely_fires(median: float) -> None:
    # Seeded, so the figure is the same on every run: 20 collectors x 1,000
    # noisy runs (log-normal records and run times), fewer than 1 alarm per 1,000.
    onsets = runs_total = 0
    for seed in range(20):
        rng = random.Random(seed)
        runs = Runs()
        held: list[str] = []
        for _ in range(1000):
            now = runs.run(int(median * rng.lognormvariate(0, 0.3)), 2 * rng.lognormvariate(0, 0.2))
            onsets += len(set(now) - set(held))
            held = now
            runs_total += 1
    assert onsets < runs_total / 1000


def test_a_slowdown_fires_duration_anomaly() -> None:
    runs = Runs()
    rng = random.Random(6)
    runs.normal(40, rng)
    assert runs.run(500, 12.0) == []
    assert runs.run(500, 11.0) == []
    assert runs.run(500, 13.0) == ["duration_anomaly"]
    anomaly = runs.conditions()["duration_anomaly"]
    assert anomaly.level is AlertLevel.WARNING
    assert anomaly.message.startswith("ran 13 s; its usual is 2")
    assert anomaly.figures["duration"] == 13.0
    # Under the fixed threshold (300 s): only the baseline sees it.
    assert "slow_execution" not in runs.conditions()


def test_tiny_durations_never_fire() -> None:
    runs = Runs()
    for _ in range(40):
        runs.run(500, 0.001)
    assert all(runs.run(500, 0.05) == [] for _ in range(10))  # 50x, but 49 ms


def test_no_data_is_a_clock_rule() -> None:
    runs = Runs(no_data_after=3600)
    runs.normal(30, random.Random(7))
    for _ in range(11):
        runs.run(0)  # 55 minutes of empty runs
    assert "no_data" not in runs.conditions()
    runs.now += 600  # the watchdog, ten minutes later
    held = runs.conditions()["no_data"]
    assert held.level is AlertLevel.WARNING
    assert held.message == (
        "runs succeed but none has collected records in 65.0 min (threshold 60.0 min)"
    )
    runs.run(500)  # records again: it clears
    assert "no_data" not in runs.conditions()


def test_rules_can_be_switched_off_per_collector() -> None:
    runs = Runs(
        collectors={
            "pools": CollectorThresholds(
                records_anomaly_factor=0, duration_anomaly_factor=0, no_data_after=0
            )
        }
    )
    runs.normal(30, random.Random(8))
    for _ in range(30):
        assert runs.run(0, 60.0) == []
    runs.now += 10 * 86400
    assert set(runs.conditions()) == {"stale"}  # no_data and the anomaly rules stay off


def test_the_score_agrees_with_the_status(clock: FakeClock) -> None:
    from support.runs import run

    with watched(clock) as captured:
        for _ in range(3):
            run("pools", fail=True)
        health = captured.monitor.health("pools")["pools"]
        assert health.status is CollectionStatus.CRITICAL
        assert health.health_score is not None and health.health_score <= 40


def test_health_shows_the_baseline(clock: FakeClock) -> None:
    from support.runs import run

    with watched(clock) as captured:
        for _ in range(25):
            run("pools", records=480)
            clock.advance(minutes=5)
        health = captured.monitor.health("pools")["pools"]
        assert health.baseline_runs == 25
        assert health.usual_records is not None
        assert round(health.usual_records.median) == 480
        assert health.usual_records.low <= 480 <= health.usual_records.high
        assert health.usual_duration is not None
        assert health.last_records_at is not None
        assert health.to_dict()["usual_records"]["median"] == pytest.approx(480)


def test_the_usual_values_follow_every_run() -> None:
    # health() reuses them between runs; each run that moves the estimate renews them.
    runs = Runs()

    def usual() -> tuple[Any, Any]:
        health = runs.evaluator.health("pools", runs.now, None)
        assert health is not None
        return health.usual_records, health.usual_duration

    runs.run(0, duration=1.0, status=ExecutionStatus.FAILURE)  # failures teach nothing
    assert usual() == (None, None)
    # The first success: log(1 + 0 records) = log(1.0 s) = 0, as the empty estimates say.
    runs.run(0, duration=1.0)
    records, duration = usual()
    assert records is not None and records.median == 0
    assert duration is not None and duration.median == pytest.approx(1.0)
    assert usual() == (records, duration)
    runs.run(100, duration=4.0)
    moved = usual()
    assert moved[0] is not None and moved[0].median > 0
    assert moved[1] is not None and moved[1].median > 1.0


def test_a_collapse_reaches_the_alert_handlers(clock: FakeClock) -> None:
    from support.runs import run

    with watched(clock) as captured:
        for _ in range(30):
            run("pools", records=500)
            clock.advance(minutes=5)
        for _ in range(3):
            run("pools", records=3)
            clock.advance(minutes=5)
        [alert] = captured.monitor.alerts()
        assert alert.rule == "records_anomaly"
        assert alert.message.startswith("collected 3 records; its usual is 500")
        assert captured.monitor.health("pools")["pools"].status is CollectionStatus.WARNING
        run("pools", records=500)  # recovery_threshold 1: one good run resolves it
        assert captured.monitor.alerts() == []


def _wait_for(predicate: Any, timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _stored_runs(url: str, collector: str) -> int:
    from gecko_otel.store._open import open_reader
    from gecko_otel.store.baselines import read_baselines

    store = open_reader(url)
    try:
        stored = read_baselines(store.engine).get(collector)
    finally:
        store.close()
    return stored.runs if stored is not None else 0


SYNC = {"watchdog_interval": 0.05, "store_flush_interval": 0.05}


def test_a_restart_keeps_the_baseline(store_url: str) -> None:
    from support.runs import run
    from support.store_helpers import stored_monitor

    with stored_monitor(store_url, **SYNC) as first:
        for _ in range(30):
            run("pools", records=500, monitor=first.monitor)
        _wait_for(lambda: _stored_runs(store_url, "pools") == 30)
    with stored_monitor(store_url, **SYNC) as second:
        health = second.monitor.health("pools")["pools"]
        assert health.baseline_runs == 30  # no warm-up again
        assert health.usual_records is not None and round(health.usual_records.median) == 500
        for _ in range(3):
            run("pools", records=2, monitor=second.monitor)
        assert [a.rule for a in second.monitor.alerts()] == ["records_anomaly"]


def test_two_processes_sharing_a_store_agree(store_url: str) -> None:
    from support.runs import run
    from support.store_helpers import stored_monitor

    with (
        stored_monitor(store_url, instance="a", **SYNC) as a,
        stored_monitor(store_url, instance="b", **SYNC) as b,
    ):
        for _ in range(30):
            run("pools", records=400, monitor=a.monitor)
            run("pools", records=900, monitor=b.monitor)

        def medians() -> tuple[float, float]:
            ours = [m.health("pools")["pools"].usual_records for m in (a.monitor, b.monitor)]
            assert ours[0] is not None and ours[1] is not None
            return ours[0].median, ours[1].median

        # Each learned only its own runs (400 or 900 records); syncing every 50 ms
        # may already have begun to blend them, so only where they end is checked.
        _wait_for(lambda: abs(medians()[1] / medians()[0] - 1) < 0.1)
        low, high = sorted(medians())
        assert low > 400 and high < 900  # met between the two


def test_threshold_changes_apply_at_once() -> None:
    runs = Runs()
    runs.normal(30, random.Random(9))
    off = MonitorConfig(min_runs_for_rate=10**6, records_anomaly_factor=0)
    assert runs.evaluator.retune(config=off) == ["pools"]
    assert all(runs.run(2) == [] for _ in range(4))  # switched off: nothing fires
    back = MonitorConfig(min_runs_for_rate=10**6, anomaly_runs=2)
    runs.evaluator.retune(config=back)
    assert runs.run(2) == []
    assert runs.run(2) == ["records_anomaly"]  # two in a row now


def test_a_collector_that_stays_empty_stays_anomalous() -> None:
    runs = Runs()
    runs.normal(30, random.Random(11))
    held = [runs.run(0) for _ in range(40)]
    # From the third empty run on, every run: empty runs never become usual.
    assert all(rules == ["records_anomaly"] for rules in held[2:])
    assert runs.conditions()["records_anomaly"].level is AlertLevel.CRITICAL


def test_baselines_meet_by_what_each_has_learned() -> None:
    from gecko_otel._health.baseline import Baseline
    from gecko_otel._values.health import BaselineState

    t = MonitorConfig().thresholds_for("pools")
    ours = Baseline()
    for _ in range(60):
        ours.observe(500, 2.0, T0, t)
    newcomer = BaselineState(
        runs=1,
        records_center=math.log1p(5000),
        records_spread=0.1,
        zero_share=0.0,
        duration_runs=1,
        duration_center=math.log(2.0),
        duration_spread=0.1,
        last_records_at=None,
    )
    ours.adopt(newcomer, t, blend=True)
    usual = ours.usual_records()
    assert usual is not None and 450 < usual.median < 600  # one run barely moves fifty
