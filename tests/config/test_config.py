"""Configuration errors, environment variables, setup() and provider selection."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import CollectorThresholds, ConfigError, MonitorConfig
from gecko_otel._config import ENV_VARS
from support.programs import run_program


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_history_per_collector", 0),
        ("max_history_per_collector", -1),
        ("max_collectors", 1.5),
        ("max_attribute_length", "4096"),
        ("max_metadata_entries", True),
        ("max_messages_per_run", None),
    ],
)
def test_invalid_numbers_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"MonitorConfig\.{field} must be a positive integer"):
        MonitorConfig(**{field: value})


@pytest.mark.parametrize("keys", ["password", ("",), (1,), None])
def test_invalid_sensitive_keys(keys: Any) -> None:
    with pytest.raises(ConfigError, match="sensitive_keys"):
        MonitorConfig(sensitive_keys=keys)


def test_config_is_frozen_and_replace_validates() -> None:
    config = MonitorConfig()
    with pytest.raises(AttributeError):
        config.max_collectors = 5  # type: ignore[misc]
    assert config.replace(max_collectors=5).max_collectors == 5
    with pytest.raises(ConfigError):
        config.replace(max_collectors=0)
    assert MonitorConfig(sensitive_keys=["a", "b"]).sensitive_keys == ("a", "b")  # type: ignore[arg-type]


def test_the_metric_series_limit_follows_max_collectors_and_never_falls_below_it() -> None:
    assert MonitorConfig().metric_series_limit == 8 * 10_000
    assert MonitorConfig(max_collectors=50).metric_series_limit == 400
    assert MonitorConfig(max_collectors=50, max_metric_series=50).metric_series_limit == 50
    with pytest.raises(ConfigError, match=r"max_metric_series \(49\) is below max_collectors"):
        MonitorConfig(max_collectors=50, max_metric_series=49)
    for bad in (0, 2.5, "100", True):
        with pytest.raises(ConfigError, match="max_metric_series must be a positive integer"):
            MonitorConfig(max_metric_series=bad)
    with pytest.raises(ConfigError, match="GECKO_OTEL_MAX_METRIC_SERIES='many' is invalid"):
        MonitorConfig.from_env({"GECKO_OTEL_MAX_METRIC_SERIES": "many"})
    with pytest.raises(ConfigError, match="more than max_collectors"):
        MonitorConfig(
            max_collectors=1, collectors={"a": CollectorThresholds(), "b": CollectorThresholds()}
        )


def test_from_env_reads_every_variable_in_the_table() -> None:
    env = {
        "GECKO_OTEL_MAX_HISTORY_PER_COLLECTOR": "50",
        "GECKO_OTEL_MAX_COLLECTORS": "60",
        "GECKO_OTEL_MAX_METRIC_SERIES": "600",
        "GECKO_OTEL_MAX_ATTRIBUTE_LENGTH": "70",
        "GECKO_OTEL_MAX_METADATA_ENTRIES": "80",
        "GECKO_OTEL_MAX_MESSAGES_PER_RUN": "90",
        "GECKO_OTEL_SENSITIVE_KEYS": "wallet, seed ,",
        "GECKO_OTEL_MAX_CONSECUTIVE_FAILURES": "4",
        "GECKO_OTEL_MIN_SUCCESS_RATE": "92.5",
        "GECKO_OTEL_MIN_RUNS_FOR_RATE": "7",
        "GECKO_OTEL_MAX_EXECUTION_TIME": "60",
        "GECKO_OTEL_MIN_RECORDS_PER_SECOND": "1.5",
        "GECKO_OTEL_STALE_AFTER": "900",
        "GECKO_OTEL_SUCCESS_RATE_WINDOW": "3600",
        "GECKO_OTEL_RECOVERY_THRESHOLD": "2",
        "GECKO_OTEL_ALERT_COOLDOWN": "120",
        "GECKO_OTEL_ANOMALY_WARMUP_RUNS": "30",
        "GECKO_OTEL_ANOMALY_RUNS": "4",
        "GECKO_OTEL_RECORDS_ANOMALY_FACTOR": "0.1",
        "GECKO_OTEL_DURATION_ANOMALY_FACTOR": "0",
        "GECKO_OTEL_NO_DATA_AFTER": "off",
        "GECKO_OTEL_WATCHDOG_INTERVAL": "5",
        "GECKO_OTEL_HANDLER_TIMEOUT": "3",
        "GECKO_OTEL_ALERT_QUEUE_SIZE": "50",
        "GECKO_OTEL_DATABASE_URL": "sqlite:///gecko.db",
        "GECKO_OTEL_STORE_QUEUE_SIZE": "500",
        "GECKO_OTEL_STORE_BATCH_SIZE": "20",
        "GECKO_OTEL_STORE_FLUSH_INTERVAL": "0.5",
        "GECKO_OTEL_STORE_READ_TIMEOUT": "2",
        "GECKO_OTEL_METRICS_EXPORT_INTERVAL": "15",
        "GECKO_OTEL_RETENTION_RUNS": "86400",
        "GECKO_OTEL_RETENTION_METRICS": "off",
        "GECKO_OTEL_RETENTION_ALERTS": "604800",
        "GECKO_OTEL_RETENTION_INTERVAL": "600",
        "GECKO_OTEL_SHUTDOWN_TIMEOUT": "2.5",
        "GECKO_OTEL_HANDLE_SIGTERM": "off",
    }
    assert {var for var, _ in ENV_VARS.values()} == set(env)
    config = MonitorConfig.from_env(env)
    assert config == MonitorConfig(
        max_history_per_collector=50,
        max_collectors=60,
        max_metric_series=600,
        max_attribute_length=70,
        max_metadata_entries=80,
        max_messages_per_run=90,
        sensitive_keys=("wallet", "seed"),
        max_consecutive_failures=4,
        min_success_rate=92.5,
        min_runs_for_rate=7,
        max_execution_time=60,
        min_records_per_second=1.5,
        stale_after=900,
        success_rate_window=3600,
        recovery_threshold=2,
        alert_cooldown=120,
        anomaly_warmup_runs=30,
        anomaly_runs=4,
        records_anomaly_factor=0.1,
        duration_anomaly_factor=0,
        no_data_after=None,
        watchdog_interval=5,
        handler_timeout=3,
        alert_queue_size=50,
        database_url="sqlite:///gecko.db",
        store_queue_size=500,
        store_batch_size=20,
        store_flush_interval=0.5,
        store_read_timeout=2,
        metrics_export_interval=15,
        retention_runs=86400,
        retention_metrics=None,
        retention_alerts=604800,
        retention_interval=600,
        shutdown_timeout=2.5,
        handle_sigterm=False,
    )
    assert MonitorConfig.from_env(env, max_collectors=7).max_collectors == 7
    assert MonitorConfig.from_env({"GECKO_OTEL_MAX_COLLECTORS": " "}) == MonitorConfig()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GECKO_OTEL_MAX_COLLECTORS": "lots"}, "GECKO_OTEL_MAX_COLLECTORS='lots' is invalid"),
        ({"GECKO_OTEL_MAX_HISTORY_PER_COLLECTOR": "-3"}, "GECKO_OTEL_"),
    ],
)
def test_from_env_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MonitorConfig.from_env(env)


@pytest.mark.parametrize("bad", ["", "   ", 5, b"pools"])
def test_decoration_time_collector_type_errors(bad: Any) -> None:
    with pytest.raises(ValueError, match="collector_type must be a non-empty string"):
        gecko_otel.collection(bad)(lambda: None)
    with pytest.raises(ConfigError, match="collector_type"):
        gecko_otel.track_collection(bad)


def test_metadata_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="metadata must be a mapping"):
        gecko_otel.collection("c", metadata=["network"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="@collection decorates functions"):
        gecko_otel.collection("c")(42)  # type: ignore[arg-type]


def test_setup_with_given_providers_is_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    tracer_provider = TracerProvider()
    meter_provider = MeterProvider()
    monitor = gecko_otel.setup(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        assert gecko_otel.get_monitor() is monitor
        assert gecko_otel.setup() is monitor
        assert not caplog.records
        assert gecko_otel.setup("other-service") is monitor
        assert "already called" in caplog.records[-1].getMessage()

        @gecko_otel.collection("global")
        def collect() -> None:
            pass

        collect()
        assert [r.collector_type for r in monitor.history()] == ["global"]
    finally:
        monitor.shutdown()
    assert gecko_otel.get_monitor() is None
    # Providers we were given are left running: a span still ends normally.
    with tracer_provider.get_tracer("t").start_as_current_span("after"):
        pass
    tracer_provider.shutdown()
    meter_provider.shutdown()


SETUP_PROGRAM = """
    import json
    from opentelemetry import metrics, trace
    import gecko_otel

    monitor = gecko_otel.setup("from-code")

    @gecko_otel.collection("pools")
    def collect():
        gecko_otel.current_run().add_records(3)
        return "ok"

    result = collect()
    provider = trace.get_tracer_provider()
    out = {
        "result": result,
        "runs": len(monitor.history()),
        "provider": type(provider).__name__,
        "meter_provider": type(metrics.get_meter_provider()).__name__,
        "service": dict(getattr(provider, "resource", None).attributes).get("service.name")
            if hasattr(provider, "resource") else None,
        "processors": [type(p).__name__ for p in
            getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())],
    }
    monitor.shutdown()
    print(json.dumps(out))
"""


def test_setup_creates_and_installs_providers_from_env() -> None:
    out = run_program(SETUP_PROGRAM, {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci"})
    assert out["result"] == "ok"
    assert out["runs"] == 1
    assert out["provider"] == "TracerProvider"
    assert out["meter_provider"] == "MeterProvider"
    assert out["service"] == "from-code"
    assert out["processors"] == ["HistorySpanProcessor"]  # no endpoint: no exporter


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, ["OTLPSpanExporter", "grpc"]),
        (
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            ["OTLPSpanExporter", "http"],
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"}, []),
    ],
)
def test_setup_adds_otlp_exporter_when_endpoint_set(
    env: dict[str, str], expected: list[str]
) -> None:
    code = """
        import json
        from opentelemetry import trace
        import gecko_otel

        monitor = gecko_otel.setup()
        provider = trace.get_tracer_provider()
        exporters = [
            [type(p.span_exporter).__name__, type(p.span_exporter).__module__.split(".")[4]]
            for p in provider._active_span_processor._span_processors
            if hasattr(p, "span_exporter")
        ]
        print(json.dumps({"exporters": exporters}))
        import os
        os._exit(0)  # nothing to flush; skip exporting to the closed port
    """
    out = run_program(code, env)
    assert out["exporters"] == ([expected] if expected else [])


SETUP_ERROR_PROGRAM = """
    import json, gecko_otel
    try:
        gecko_otel.setup()
    except gecko_otel.ConfigError as exc:
        print(json.dumps({"error": str(exc)}))
"""


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL='udp' is not supported"),
        # The error names the variable that was actually set.
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='udp'"),
    ],
)
def test_setup_rejects_unknown_protocol(variable: str, message: str) -> None:
    out = run_program(
        SETUP_ERROR_PROGRAM, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", variable: "udp"}
    )
    assert out["error"].startswith(message)


def test_sdk_disabled_runs_user_code_untouched() -> None:
    code = """
        import asyncio, json, gecko_otel

        monitor = gecko_otel.setup("disabled")

        @gecko_otel.collection("pools")
        def collect(x):
            gecko_otel.current_run().add_records(1)
            return x * 2

        @gecko_otel.collection("gen")
        def gen():
            yield 1
            yield 2

        @gecko_otel.collection("boom")
        async def boom():
            raise KeyError("k")

        out = {"result": collect(21), "gen": list(gen())}
        try:
            asyncio.run(boom())
        except KeyError as exc:
            out["error"] = repr(exc)
        out["runs"] = len(monitor.history())
        out["errors"] = gecko_otel.internal_error_count()
        monitor.shutdown()
        print(json.dumps(out))
    """
    out = run_program(code, {"OTEL_SDK_DISABLED": "true"})
    assert out == {"result": 42, "gen": [1, 2], "error": "KeyError('k')", "runs": 0, "errors": 0}


def test_setup_reuses_global_sdk_providers() -> None:
    code = """
        import json
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        import gecko_otel

        tp, mp = TracerProvider(), MeterProvider()
        trace.set_tracer_provider(tp)
        metrics.set_meter_provider(mp)
        monitor = gecko_otel.setup()
        with gecko_otel.track_collection("c"):
            pass
        monitor.shutdown()
        out = {"runs": len(monitor.history()), "same": trace.get_tracer_provider() is tp}
        print(json.dumps(out))
    """
    out = run_program(code, {})
    assert out["runs"] == 1
    assert out["same"] is True


def test_empty_sensitive_keys_from_env_is_an_error() -> None:
    with pytest.raises(ConfigError, match="GECKO_OTEL_SENSITIVE_KEYS"):
        MonitorConfig.from_env({"GECKO_OTEL_SENSITIVE_KEYS": " , "})


def test_setup_after_shutdown_builds_fresh_providers() -> None:
    code = """
        import json, gecko_otel
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        first = gecko_otel.setup("first")
        first.shutdown()
        second = gecko_otel.setup("second")
        exporter = InMemorySpanExporter()
        provider = second.instrumentation.tracer.span_processor  # the SDK's multi-processor
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with gecko_otel.track_collection("c") as run:
            run.add_records(1)
        out = {
            "runs": len(second.history()),
            "exported": [s.name for s in exporter.get_finished_spans()],
            "same": second is not first,
        }
        second.shutdown()
        print(json.dumps(out))
    """
    out = run_program(code, {})
    assert out == {"runs": 1, "exported": ["c"], "same": True}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_consecutive_failures": 0}, r"MonitorConfig\.max_consecutive_failures must be a pos"),
        ({"min_success_rate": 101}, r"min_success_rate must be between 0 and 100"),
        ({"min_success_rate": -1}, r"min_success_rate must be between 0 and 100"),
        ({"min_success_rate": float("nan")}, r"min_success_rate must be a number"),
        ({"min_runs_for_rate": 0}, r"min_runs_for_rate must be a positive integer"),
        ({"max_execution_time": 0}, r"max_execution_time must be positive"),
        ({"max_execution_time": "5m"}, r"max_execution_time must be seconds"),
        ({"min_records_per_second": -0.5}, r"min_records_per_second must be at least 0"),
        ({"stale_after": timedelta(0)}, r"stale_after must be positive"),
        ({"success_rate_window": -1}, r"success_rate_window must be positive"),
        ({"recovery_threshold": 0}, r"recovery_threshold must be a positive integer"),
        ({"alert_cooldown": float("inf")}, r"alert_cooldown must be positive"),
        ({"watchdog_interval": None}, r"watchdog_interval must be seconds"),
        ({"handler_timeout": 0}, r"handler_timeout must be positive"),
        ({"alert_queue_size": 0}, r"alert_queue_size must be a positive integer"),
        ({"collectors": ["pools"]}, r"collectors must map collector types"),
        (
            {"collectors": {"": CollectorThresholds()}},
            r"MonitorConfig.collectors: collector_type must be a non-empty string",
        ),
        ({"collectors": {"pools": {"max_consecutive_failures": 5}}}, r"must be a Collector"),
    ],
)
def test_threshold_errors_say_what_to_change(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MonitorConfig(**kwargs)


def test_per_collector_thresholds_override_and_normalise() -> None:
    config = MonitorConfig(
        max_consecutive_failures=3,
        min_records_per_second=10,
        stale_after=timedelta(hours=2),
        collectors={
            "pools": CollectorThresholds(
                max_consecutive_failures=5, alert_cooldown=timedelta(minutes=5)
            ),
            "trades": CollectorThresholds(min_records_per_second=0),
        },
    )
    assert config.stale_after == 7200.0
    pools = config.thresholds_for("pools")
    assert pools.max_consecutive_failures == 5
    assert pools.alert_cooldown == 300.0
    assert pools.stale_after == 7200.0
    assert pools.min_records_per_second == 10
    assert config.thresholds_for("trades").min_records_per_second is None
    assert config.thresholds_for("other").max_consecutive_failures == 3
    with pytest.raises(ConfigError, match=r"CollectorThresholds\.min_success_rate"):
        CollectorThresholds(min_success_rate=200)


def test_config_is_hashable_and_its_collectors_read_only() -> None:
    config = MonitorConfig(collectors={"pools": CollectorThresholds(stale_after=60)})
    assert hash(config) == hash(MonitorConfig(collectors={}))  # collectors are not hashed
    assert config != MonitorConfig()
    with pytest.raises(TypeError):
        config.collectors["trades"] = CollectorThresholds()  # type: ignore[index]


def test_setup_rejects_a_bad_handler_before_creating_providers() -> None:
    code = """
        import json, gecko_otel
        from opentelemetry import trace
        try:
            gecko_otel.setup(alert_handlers=["not callable"])
        except gecko_otel.ConfigError as exc:
            provider = type(trace.get_tracer_provider()).__name__
            print(json.dumps({"error": str(exc), "provider": provider}))
    """
    out = run_program(code, {})
    assert out["error"].startswith("an alert handler must be callable")
    assert out["provider"] == "ProxyTracerProvider"  # nothing was installed
