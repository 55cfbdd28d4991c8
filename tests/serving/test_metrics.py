"""``/metrics``: the Prometheus text format on the status server's port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gecko_otel import ConfigError, Monitor, MonitorConfig
from gecko_otel.serving import StatusServer
from support.programs import run_program
from support.status import fetch, populate

prometheus_client = pytest.importorskip("prometheus_client")
from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def _samples(body: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture
def served() -> Iterator[tuple[Monitor, StatusServer]]:
    """A Monitor whose metrics reach a registry of its own through OTel's Prometheus reader."""
    registry = prometheus_client.CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    meters = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    traces = TracerProvider(shutdown_on_exit=False)
    monitor = Monitor(
        tracer_provider=traces,
        meter_provider=meters,
        config=MonitorConfig(min_runs_for_rate=1000),
        owned_providers=[traces, meters],
        watchdog=False,
    )
    try:
        populate(monitor)
        yield monitor, monitor.serve_http(port=0, token="s3cret-token", metrics=registry)
    finally:
        monitor.shutdown()


def test_metrics_serves_the_runs_in_prometheus_text(served: tuple[Monitor, StatusServer]) -> None:
    _monitor, server = served
    reply = fetch(server, "/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    runs = _samples(reply.body, "gecko_collection_duration_seconds_count")
    by_collector: dict[str, float] = {}
    for labels, value in runs.items():
        collector = dict(labels)["gecko_collector_type"]
        by_collector[collector] = by_collector.get(collector, 0) + value
    assert by_collector["pools"] == 3
    assert by_collector["trades"] == 3
    failures = _samples(reply.body, "gecko_collector_consecutive_failures")
    assert {dict(k)["gecko_collector_type"]: v for k, v in failures.items()}["trades"] == 3


def test_metrics_needs_the_token(served: tuple[Monitor, StatusServer]) -> None:
    _monitor, server = served
    assert fetch(server, "/metrics").status == 401


def test_metrics_false_turns_it_off(served: tuple[Monitor, StatusServer]) -> None:
    monitor, _server = served
    server = monitor.serve_http(port=0, metrics=False)
    assert "turned off" in fetch(server, "/metrics").json()["error"]
    with pytest.raises(ConfigError, match="CollectorRegistry"):
        monitor.serve_http(port=0, metrics="yes")


SETUP_PROGRAM = """
    import json, urllib.request
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    import gecko_otel

    monitor = gecko_otel.setup("prom-demo", metric_readers=[PrometheusMetricReader()])

    @gecko_otel.collection("pools")
    def collect():
        gecko_otel.current_run().add_records(5)

    collect()
    collect()
    server = monitor.serve_http(port=0)
    body = urllib.request.urlopen(server.url + "metrics", timeout=10).read().decode()
    page = urllib.request.urlopen(server.url, timeout=10).status
    try:
        gecko_otel.setup("again", metric_readers=[PrometheusMetricReader()])
        again = "no warning"
    except Exception as exc:
        again = type(exc).__name__
    monitor.shutdown()
    print(json.dumps({"body": body, "page": page}))
"""


def test_setup_takes_the_prometheus_reader_and_serve_http_serves_it() -> None:
    out = run_program(SETUP_PROGRAM)
    assert out["page"] == 200
    records = _samples(out["body"].encode(), "gecko_collection_records_total")
    assert sum(records.values()) == 10
    target = _samples(out["body"].encode(), "target_info")
    assert any(dict(labels).get("service_name") == "prom-demo" for labels in target)


def test_setup_refuses_readers_it_cannot_attach() -> None:
    code = """
        import json
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        import gecko_otel

        metrics.set_meter_provider(MeterProvider())
        try:
            gecko_otel.setup("x", metric_readers=[PrometheusMetricReader()])
            print(json.dumps({"error": None}))
        except gecko_otel.ConfigError as exc:
            print(json.dumps({"error": str(exc)}))
    """
    error = run_program(code)["error"]
    assert "add the readers to that MeterProvider" in error
