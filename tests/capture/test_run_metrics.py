"""The metrics a run produces, as a metric backend sees them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from gecko_otel import semconv
from gecko_otel.testing import capture_runs
from support.runs import run


def test_every_status_a_run_ends_in_is_counted() -> None:
    # Missed and skipped runs have no duration, so only this counter shows them.
    with capture_runs() as captured:
        run("pools", records=3)
        run("pools", fail=True)
        now = datetime.now(timezone.utc)
        captured.monitor.record_not_started("pools", status="missed", scheduled_time=now)
        for _ in range(4):
            captured.monitor.record_not_started("pools", status="skipped", scheduled_time=now)
        runs = {
            a[semconv.COLLECTION_STATUS]: value
            for a, value in captured.metrics()[semconv.METRIC_RUNS]
            if a[semconv.COLLECTOR_TYPE] == "pools"
        }
    # Every status at 0 until it happens: Prometheus' increase() sees the first one.
    assert runs == {
        "success": 1,
        "partial": 0,
        "failure": 1,
        "timeout": 0,
        "cancelled": 0,
        "missed": 1,
        "skipped": 4,
    }


def test_the_duration_points_at_the_run_s_trace() -> None:
    # The trace_based exemplar filter keeps a measurement made in a sampled
    # span's context: Grafana jumps from a slow bucket to the run's trace.
    with capture_runs() as captured:
        run("pools")
        [span] = captured.spans
        [(_, point)] = captured.metrics()[semconv.METRIC_DURATION]
    assert isinstance(point, HistogramDataPoint)
    [exemplar] = point.exemplars
    assert (exemplar.trace_id, exemplar.span_id) == (
        span.context.trace_id,
        span.context.span_id,
    )
    assert exemplar.value == pytest.approx(span.end_time / 1e9 - span.start_time / 1e9, abs=1e-6)
