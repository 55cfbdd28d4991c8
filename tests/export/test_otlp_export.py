"""End to end: ``setup()`` exports spans and metrics over OTLP/gRPC to a real receiver.

An in-process gRPC server implements the OTLP trace and metrics services and
keeps every request it receives. A subprocess (so that the global providers
``setup()`` installs stay out of the test process) configures gecko-otel from
``OTEL_*`` variables only, runs a succeeding and a failing collector, and
shuts the Monitor down, which must flush both exporters before it exits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from gecko_otel import semconv
from support.otlp import Receiver, otlp_receiver

pytestmark = pytest.mark.integration

SERVICE_NAME = "otlp-e2e"
SUCCESS_RUNS = 2
FAILURE_RUNS = 2
RECORDS_PER_RUN = 7
SUBPROCESS_TIMEOUT = 60.0
POLL_TIMEOUT = 3.0

PROGRAM = textwrap.dedent(
    f"""
    import gecko_otel

    monitor = gecko_otel.setup()

    @gecko_otel.collection(
        "pool_collector", metadata={{"network": "solana", "api_key": "sekrit"}}
    )
    def collect_pools():
        gecko_otel.current_run().add_records({RECORDS_PER_RUN})

    @gecko_otel.collection("broken_collector")
    def collect_broken():
        raise ValueError("upstream said no")

    for _ in range({SUCCESS_RUNS}):
        collect_pools()
    for _ in range({FAILURE_RUNS}):
        try:
            collect_broken()
        except ValueError:
            pass
        else:
            raise SystemExit("the ValueError did not propagate")

    monitor.shutdown()
    """
)


# -- the receiver -------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A real OTLP/gRPC receiver on a free loopback port."""
    with otlp_receiver() as received:
        yield received


# -- the exporting program ------------------------------------------------------


@dataclass
class Exported:
    """Decoded OTLP data: spans with their resource and scope, metrics likewise."""

    spans: list[tuple[dict[str, Any], str, Any]]
    metrics: list[tuple[dict[str, Any], str, Any]]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def attributes(key_values: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list as a dict."""
    return {kv.key: _value(kv.value) for kv in key_values}


def _child_env(port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "GECKO_OTEL_"))
    }
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_SERVICE_NAME=SERVICE_NAME,
        OTEL_METRIC_EXPORT_INTERVAL="200",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    return env


def _decode(receiver: Receiver) -> Exported:
    spans = []
    for request in receiver.trace_requests:
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                spans.extend((resource, scope_spans.scope.name, span) for span in scope_spans.spans)
    metrics = []
    for request in receiver.metric_requests:
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                metrics.extend(
                    (resource, scope_metrics.scope.name, metric) for metric in scope_metrics.metrics
                )
    return Exported(spans=spans, metrics=metrics)


def _complete(exported: Exported) -> bool:
    span_names = [span.name for _, _, span in exported.spans]
    metric_names = {metric.name for _, _, metric in exported.metrics}
    return (
        span_names.count("pool_collector") >= SUCCESS_RUNS
        and span_names.count("broken_collector") >= FAILURE_RUNS
        and semconv.METRIC_DURATION in metric_names
    )


@pytest.fixture(scope="module")
def exported(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Run the program once against the receiver; what the receiver decoded."""
    script: Path = tmp_path_factory.mktemp("otlp") / "collectors.py"
    script.write_text(PROGRAM, encoding="utf-8")
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            env=_child_env(receiver.port),
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the exporting program hung (exporters retrying?); stderr:\n{exc.stderr!r}")
    assert proc.returncode == 0, (
        f"the exporting program exited {proc.returncode}; stderr:\n{proc.stderr}"
    )
    assert "internal error" not in proc.stderr, proc.stderr
    # shutdown() flushed both exporters, so the data should already be here;
    # the bounded wait only covers the receiver's threads finishing a request.
    deadline = time.monotonic() + POLL_TIMEOUT
    data = _decode(receiver)
    while not _complete(data) and time.monotonic() < deadline:
        time.sleep(0.05)
        data = _decode(receiver)
    return data


def _spans(exported: Exported, name: str) -> list[Any]:
    return [span for _, _, span in exported.spans if span.name == name]


def _metric_points(exported: Exported, name: str) -> list[tuple[Any, Any]]:
    """``(metric, point)`` for every data point of the metric ``name``."""
    points = []
    for _, _, metric in exported.metrics:
        if metric.name != name:
            continue
        kind = metric.WhichOneof("data")
        points.extend((metric, point) for point in getattr(metric, kind).data_points)
    return points


# -- spans ----------------------------------------------------------------------------


def test_successful_run_span_carries_run_attributes(exported: Exported) -> None:
    spans = _spans(exported, "pool_collector")
    assert len(spans) == SUCCESS_RUNS, [s.name for _, _, s in exported.spans]
    execution_ids = set()
    for span in spans:
        attrs = attributes(span.attributes)
        assert attrs[semconv.COLLECTOR_TYPE] == "pool_collector"
        assert attrs[semconv.COLLECTION_STATUS] == "success"
        records = next(kv.value for kv in span.attributes if kv.key == semconv.COLLECTION_RECORDS)
        assert records.WhichOneof("value") == "int_value"
        assert records.int_value == RECORDS_PER_RUN
        assert re.fullmatch(r"[0-9a-f]{32}", attrs[semconv.EXECUTION_ID])
        execution_ids.add(attrs[semconv.EXECUTION_ID])
        assert attrs["gecko.metadata.network"] == "solana"
        assert attrs["gecko.metadata.api_key"] == "[REDACTED]"
        assert attrs[semconv.CODE_FUNCTION_NAME].endswith("collect_pools")
        assert semconv.ERROR_TYPE not in attrs
        assert span.status.code != Status.STATUS_CODE_ERROR
    assert len(execution_ids) == SUCCESS_RUNS, "execution ids must differ between runs"


def test_no_secret_reaches_the_receiver(exported: Exported) -> None:
    for _, _, span in exported.spans:
        assert "sekrit" not in span.SerializeToString().decode("utf-8", "replace")
    for _, _, metric in exported.metrics:
        assert "sekrit" not in metric.SerializeToString().decode("utf-8", "replace")


def test_failed_run_span_has_error_status_and_exception_event(exported: Exported) -> None:
    spans = _spans(exported, "broken_collector")
    assert len(spans) == FAILURE_RUNS, [s.name for _, _, s in exported.spans]
    for span in spans:
        attrs = attributes(span.attributes)
        assert span.status.code == Status.STATUS_CODE_ERROR
        assert span.status.message == "upstream said no"
        assert attrs[semconv.COLLECTOR_TYPE] == "broken_collector"
        assert attrs[semconv.COLLECTION_STATUS] == "failure"
        assert attrs[semconv.ERROR_TYPE] == "ValueError"
        assert attrs[semconv.COLLECTION_RECORDS] == 0
        events = [event for event in span.events if event.name == "exception"]
        assert len(events) == 1, [event.name for event in span.events]
        event_attrs = attributes(events[0].attributes)
        assert event_attrs["exception.type"] == "ValueError"
        assert event_attrs["exception.message"] == "upstream said no"


def test_spans_carry_resource_and_scope(exported: Exported) -> None:
    assert exported.spans
    for resource, scope, _ in exported.spans:
        assert resource["service.name"] == SERVICE_NAME
        assert scope == semconv.SCOPE_NAME


# -- metrics --------------------------------------------------------------------------


def test_metrics_carry_resource_and_scope(exported: Exported) -> None:
    assert exported.metrics
    for resource, scope, _ in exported.metrics:
        assert resource["service.name"] == SERVICE_NAME
        assert scope == semconv.SCOPE_NAME


def test_duration_histogram(exported: Exported) -> None:
    points = _metric_points(exported, semconv.METRIC_DURATION)
    assert points, [m.name for _, _, m in exported.metrics]
    for metric, _ in points:
        assert metric.WhichOneof("data") == "histogram"
        assert metric.unit == "s"
    # Cumulative temporality: the last point of each series holds every run.
    latest: dict[tuple[tuple[str, Any], ...], Any] = {}
    for _, point in points:
        key = tuple(sorted(attributes(point.attributes).items()))
        latest[key] = point
    success_key = (
        (semconv.COLLECTION_STATUS, "success"),
        (semconv.COLLECTOR_TYPE, "pool_collector"),
    )
    failure_key = (
        (semconv.ERROR_TYPE, "ValueError"),
        (semconv.COLLECTION_STATUS, "failure"),
        (semconv.COLLECTOR_TYPE, "broken_collector"),
    )
    assert set(latest) == {success_key, tuple(sorted(failure_key))}, list(latest)
    success = latest[success_key]
    assert success.count == SUCCESS_RUNS
    assert list(success.explicit_bounds) == list(semconv.DURATION_BUCKETS)
    assert sum(success.bucket_counts) == SUCCESS_RUNS
    assert success.sum >= 0
    failure = latest[tuple(sorted(failure_key))]
    assert failure.count == FAILURE_RUNS
    assert list(failure.explicit_bounds) == list(semconv.DURATION_BUCKETS)


def test_records_counter(exported: Exported) -> None:
    points = _metric_points(exported, semconv.METRIC_RECORDS)
    assert points, [m.name for _, _, m in exported.metrics]
    for metric, _ in points:
        assert metric.WhichOneof("data") == "sum"
        assert metric.sum.is_monotonic
    pool_points = [
        point
        for _, point in points
        if attributes(point.attributes) == {semconv.COLLECTOR_TYPE: "pool_collector"}
    ]
    assert pool_points, [attributes(p.attributes) for _, p in points]
    latest = max(pool_points, key=lambda point: point.time_unix_nano)
    assert latest.as_int == SUCCESS_RUNS * RECORDS_PER_RUN
