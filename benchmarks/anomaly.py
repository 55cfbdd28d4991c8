"""How fast the adaptive baselines catch silent failures, and how often they cry wolf.

    python benchmarks/anomaly.py [--collectors 200] [--seed 7]

A synthetic fleet of collectors runs every five minutes through gecko-otel's
own health rules (`HealthEvaluator`, the code a Monitor runs), with realistic
noise: log-normal records and run times, a diurnal swing of the volume of
+-50 %, and 2 % partial runs. After a day of normal runs, each collector gets
one fault for 30 runs (or none, as a control):

* volume collapse to 1 %, to 20 %, and to zero records;
* slowdowns of 3x, 5x and 10x;
* data freshness lost: runs succeed with no records, judged by ``no_data``
  alone (``no_data_after`` = 1 h here; 6 h by default).

It prints, per fault, the detection delay in runs (median and worst) of the
rule meant to catch it, and what the fixed-threshold rules alone
(consecutive failures, success rate, ``max_execution_time``, staleness)
catch of the same faults; then the false alarms per 1,000 normal runs: an
anomaly rule starting to hold on a run without a fault. Targets: collapse to
20 % or less detected within 3 runs, a 5x or worse slowdown within 5, under
1 false alarm per 1,000 runs.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections import defaultdict

from gecko_otel import CollectorThresholds, MonitorConfig
from gecko_otel._health.rules import HealthEvaluator
from gecko_otel._values.records import ExecutionStatus

EVERY = 300.0
DAY_RUNS = int(86400 / EVERY)
FAULT_RUNS = 30
ANOMALY_RULES = {"records_anomaly", "duration_anomaly", "no_data"}
FIXED_RULES = {"consecutive_failures", "low_success_rate", "slow_execution", "stale"}
#: fault: (records factor, duration factor, the rule meant to catch it)
FAULTS = {
    "none (control)": (1.0, 1.0, None),
    "records to 1 %": (0.01, 1.0, "records_anomaly"),
    "records to 20 %": (0.2, 1.0, "records_anomaly"),
    "records to zero": (0.0, 1.0, "records_anomaly"),
    "3x slower": (1.0, 3.0, "duration_anomaly"),
    "5x slower": (1.0, 5.0, "duration_anomaly"),
    "10x slower": (1.0, 10.0, "duration_anomaly"),
    "freshness lost": (0.0, 1.0, "no_data"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collectors", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kinds = list(FAULTS)
    # Freshness is no_data's job alone: the records rule is off for those collectors.
    fresh = {
        f"c{i:03d}": CollectorThresholds(records_anomaly_factor=0)
        for i in range(args.collectors)
        if kinds[i % len(kinds)] == "freshness lost"
    }
    evaluator = HealthEvaluator(
        MonitorConfig(no_data_after=3600, collectors=fresh, max_collectors=args.collectors)
    )
    delays: dict[str, list[float]] = defaultdict(list)
    fixed_caught: dict[str, int] = defaultdict(int)
    per_kind: dict[str, int] = defaultdict(int)
    normal_runs = false_alarms = 0
    warmup = MonitorConfig().anomaly_warmup_runs
    for i in range(args.collectors):
        name, kind = f"c{i:03d}", kinds[i % len(kinds)]
        per_kind[kind] += 1
        records_factor, duration_factor, rule = FAULTS[kind]
        usual_records = math.exp(rng.uniform(math.log(10), math.log(5000)))
        usual_seconds = math.exp(rng.uniform(math.log(0.5), math.log(60)))
        phase = rng.uniform(0, 2 * math.pi)
        now = 1_750_000_000.0 + rng.uniform(0, EVERY)
        held_before: set[str] = set()
        detected = None
        fixed = False
        for n in range(DAY_RUNS + FAULT_RUNS):
            now += EVERY
            faulty = n >= DAY_RUNS and rule is not None
            swing = 1 + 0.5 * math.sin(2 * math.pi * (now % 86400) / 86400 + phase)
            partial = rng.random() < 0.02
            records = usual_records * swing * rng.lognormvariate(0, 0.35) * (0.5 if partial else 1)
            seconds = usual_seconds * rng.lognormvariate(0, 0.25)
            if faulty:
                records *= records_factor
                seconds *= duration_factor
            status = ExecutionStatus.PARTIAL if partial else ExecutionStatus.SUCCESS
            held = {c.rule for c in evaluator.observe(name, status, seconds, int(records), now)}
            held |= {c.rule for c in evaluator.conditions(name, now)}
            if faulty:
                if detected is None and rule in held:
                    detected = n - DAY_RUNS + 1
                fixed = fixed or bool(held & FIXED_RULES)
            elif n >= warmup:
                normal_runs += 1
                false_alarms += len((held - held_before) & ANOMALY_RULES)
            held_before = held
        if rule is not None:
            delays[kind].append(detected if detected is not None else math.inf)
            fixed_caught[kind] += fixed
    print(
        f"{args.collectors} collectors, a run every 5 minutes; a day of normal runs, "
        f"then {FAULT_RUNS} runs with the fault\n"
    )
    print(
        f"{'fault':<18} {'collectors':>10} {'detected':>9} {'median':>7} {'worst':>6}  fixed rules"
    )
    for kind in kinds[1:]:
        found = [d for d in delays[kind] if d != math.inf]
        median = f"{statistics.median(found):.0f}" if found else "-"
        worst = f"{max(delays[kind]):.0f}" if found and len(found) == len(delays[kind]) else "never"
        print(
            f"{kind:<18} {per_kind[kind]:>10} {len(found):>5}/{len(delays[kind]):<3} "
            f"{median:>7} {worst:>6}  {fixed_caught[kind]}/{per_kind[kind]} caught"
        )
    rate = 1000 * false_alarms / normal_runs if normal_runs else 0.0
    print(
        f"\nfalse alarms: {false_alarms} anomaly onsets in {normal_runs:,} normal runs "
        f"= {rate:.2f} per 1,000 runs (target < 1)"
    )
    print(
        "delays are in runs after the fault began; 'fixed rules' are the rules without a baseline"
    )


if __name__ == "__main__":
    main()
