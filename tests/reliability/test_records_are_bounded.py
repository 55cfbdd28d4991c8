"""Guarantee: one run's record count can never break export or storage.

``add_records(2**64)`` used to make the cumulative records counter overflow
int64, which stopped OTLP metric export for the rest of the process, and both
stores refused the run's row. Counts are clamped at the API boundary to
``MAX_RECORDS_PER_RUN`` (logged) and running totals saturate at int64.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics

import gecko_otel
from gecko_otel._checks import INT64_MAX, MAX_RECORDS_PER_RUN
from gecko_otel._history.memory import Aggregate
from gecko_otel.testing import CapturedRuns
from support.store_helpers import finished, stored_monitor

HUGE = 2**64


def records_points(captured: CapturedRuns) -> list[int]:
    data = captured.metric_reader.get_metrics_data()
    assert data is not None
    encode_metrics(data)  # what the OTLP exporter does: raises if a value overflows int64
    return [
        point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "gecko.collection.records"
        for point in metric.data.data_points
    ]


@pytest.mark.parametrize(
    "report",
    [
        pytest.param(lambda run: run.add_records(HUGE), id="add_records"),
        pytest.param(lambda run: setattr(run, "records_collected", HUGE), id="assignment"),
    ],
)
def test_a_huge_count_is_clamped_and_metrics_still_export(
    captured: CapturedRuns, caplog: pytest.LogCaptureFixture, report: object
) -> None:
    for _ in range(3):
        with gecko_otel.track_collection("huge") as run:
            report(run)  # type: ignore[operator]
    assert [r.records_collected for r in captured.runs_of("huge")] == [MAX_RECORDS_PER_RUN] * 3
    assert any("clamped" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    with gecko_otel.track_collection("small") as run:
        run.add_records(5)
    points = records_points(captured)
    assert 3 * MAX_RECORDS_PER_RUN in points
    assert 5 in points


def test_a_result_object_with_a_huge_count_is_clamped(captured: CapturedRuns) -> None:
    class Result:
        records_collected = HUGE
        success = True
        errors = ()
        warnings = ()

    @gecko_otel.collection("result")
    def collect() -> Result:
        return Result()

    collect()
    [record] = captured.runs_of("result")
    assert record.records_collected == MAX_RECORDS_PER_RUN


def test_running_totals_saturate_at_int64() -> None:
    """Eight million clamped runs would pass int64: the running total stops there."""
    aggregate = Aggregate()
    aggregate.records = INT64_MAX - 10
    aggregate.add(finished("many", datetime.now(timezone.utc), records=MAX_RECORDS_PER_RUN))
    assert aggregate.records == INT64_MAX
    other = aggregate.copy()
    aggregate.merge(other)
    assert aggregate.records == INT64_MAX


def test_the_store_keeps_a_clamped_run(store_url: str) -> None:
    with stored_monitor(store_url) as sm:
        with gecko_otel.track_collection("huge", monitor=sm.monitor) as run:
            run.add_records(HUGE)
        assert sm.monitor.force_flush()
        assert sm.monitor.system_health().dropped["store_rejected"] == 0
        [record] = sm.monitor.history("huge")
        assert record.records_collected == MAX_RECORDS_PER_RUN
