"""collector-config/otelcol.yaml, the OpenTelemetry Collector configuration, checked as a file.

No Collector binary runs here (none can be installed), so these tests check structure,
not behaviour: the file loads, its pipelines are wired to components it defines and that
the otelcol-contrib version it targets ships (otelcol_contrib_components.txt, from that
release's manifest), memory_limiter comes first, the prometheus exporter keeps series
across runs of scheduled collectors, and nothing is defined and left unused. Whether the
Collector accepts each key is what `otelcol-contrib validate --config ...` tells.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "collector-config" / "otelcol.yaml"
COMPONENTS = Path(__file__).with_name("otelcol_contrib_components.txt")

SECTIONS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
    "extensions": "extension",
}
_VERSION = re.compile(r"otelcol-contrib (v\d+\.\d+\.\d+)")
_ENV = re.compile(r"\$\{env:([A-Za-z_]\w*)(?::-[^}]*)?\}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration(text: str) -> float:
    """Seconds in a Go duration string ("15m", "1h30m", "90s")."""
    if not re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(text))


def component_type(component_id: str) -> str:
    """The type of a component ID: "otlp/second" is an otlp receiver named second."""
    return component_id.split("/", 1)[0]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def distribution() -> dict[tuple[str, str], str]:
    """(kind, type) -> how the type name was established, for the targeted release."""
    found: dict[tuple[str, str], str] = {}
    for line in COMPONENTS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, type_, how, _gomod, _version = line.split()
        found[kind, type_] = how
    return found


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return config["service"]["pipelines"]


def defined(config: dict[str, Any], section: str) -> dict[str, Any]:
    return {name: value or {} for name, value in (config.get(section) or {}).items()}


def test_config_and_component_list_name_the_same_release() -> None:
    config_version = _VERSION.search(CONFIG.read_text(encoding="utf-8"))
    list_version = _VERSION.search(COMPONENTS.read_text(encoding="utf-8"))
    assert config_version and list_version
    assert config_version.group(1) == list_version.group(1)


def test_component_list_has_the_whole_manifest(distribution: dict[tuple[str, str], str]) -> None:
    assert len(distribution) == 244  # what the header says the manifest holds
    assert {kind for kind, _ in distribution} == {*SECTIONS.values(), "provider"}


def test_every_component_in_a_pipeline_is_defined(config: dict[str, Any]) -> None:
    for name, pipeline in pipelines(config).items():
        for role in ("receivers", "processors", "exporters"):
            for component in pipeline.get(role, []):
                assert component in defined(config, role) or component in defined(
                    config, "connectors"
                ), f"pipeline {name}: {role[:-1]} {component} is not defined under {role}"
    for extension in config["service"].get("extensions", []):
        assert extension in defined(config, "extensions"), extension


def test_every_defined_component_is_used(config: dict[str, Any]) -> None:
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for pipeline in pipelines(config).values():
        for role in ("receivers", "processors", "exporters"):
            used[role].update(pipeline.get(role, []))
    used["connectors"] = used["receivers"] & used["exporters"]
    used["extensions"] = set(config["service"].get("extensions", []))
    for section in SECTIONS:
        dead = set(defined(config, section)) - used[section]
        assert not dead, f"defined under {section} but used by no pipeline: {sorted(dead)}"


def test_every_component_is_in_the_distribution(
    config: dict[str, Any], distribution: dict[tuple[str, str], str]
) -> None:
    for section, kind in SECTIONS.items():
        for component in defined(config, section):
            how = distribution.get((kind, component_type(component)))
            assert how, f"{kind} {component_type(component)} is not in otelcol-contrib"
            # a "derived" name is a guess from the module path: verify it before relying on it
            assert how != "derived", f"{kind} {component_type(component)}: type not verified"


def test_env_references_use_a_provider_of_the_distribution(
    distribution: dict[tuple[str, str], str],
) -> None:
    assert _ENV.search(CONFIG.read_text(encoding="utf-8"))
    assert ("provider", "env") in distribution


def test_memory_limiter_is_first_and_batch_after_it(config: dict[str, Any]) -> None:
    for name, pipeline in pipelines(config).items():
        processors = [component_type(p) for p in pipeline.get("processors", [])]
        assert processors[:1] == ["memory_limiter"], f"pipeline {name}: {processors}"
        assert "batch" in processors[1:], f"pipeline {name}: no batch after memory_limiter"
    limiter = defined(config, "processors")["memory_limiter"]
    assert go_duration(limiter["check_interval"]) > 0
    assert 0 < limiter["spike_limit_percentage"] < limiter["limit_percentage"] <= 100


def test_metrics_go_to_prometheus_with_resource_labels_and_a_run_spanning_expiry(
    config: dict[str, Any],
) -> None:
    exporters = pipelines(config)["metrics"]["exporters"]
    assert "prometheus" in exporters
    prometheus = defined(config, "exporters")["prometheus"]
    assert prometheus["resource_to_telemetry_conversion"]["enabled"] is True
    assert 5 * 60 <= go_duration(prometheus["metric_expiration"]) <= 60 * 60
    assert prometheus["enable_open_metrics"] is True  # exemplars need OpenMetrics


def test_traces_endpoint_comes_from_the_environment(config: dict[str, Any]) -> None:
    exporters = defined(config, "exporters")
    traces = [exporters[name] for name in pipelines(config)["traces"]["exporters"]]
    endpoints = [exporter["endpoint"] for exporter in traces if "endpoint" in exporter]
    assert endpoints, "no traces exporter with an endpoint"
    for endpoint in endpoints:
        assert _ENV.fullmatch(endpoint), endpoint


def test_health_check_is_enabled(config: dict[str, Any]) -> None:
    assert "health_check" in config["service"]["extensions"]
    assert defined(config, "extensions")["health_check"]["endpoint"]


def test_go_duration() -> None:
    assert go_duration("15m") == 900
    assert go_duration("1h30m") == 5400
    assert go_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="not a Go duration"):
        go_duration("15 minutes")
