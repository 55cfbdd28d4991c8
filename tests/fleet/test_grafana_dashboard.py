"""collector-config/grafana: the gecko-otel dashboard and the provisioning that loads it.

No Grafana runs here: these tests check the JSON and YAML, and check every PromQL
expression of the dashboard with the real promtool (`promtool check rules`, each
expression as a recording rule, Grafana's variables filled in), and that they read
only the metrics gecko-otel documents.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.promql import expressions, metric_names, substitute
from support.integration import skip_or_fail

GRAFANA = Path(__file__).resolve().parents[2] / "collector-config" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "gecko-otel.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "gecko-otel.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "gecko-otel.yml"

PROMETHEUS_UID = "gecko-prometheus"
TEMPO_UID = "gecko-tempo"

# The Prometheus names of gecko-otel's metrics, as docs/telemetry.md lists them (with the
# histogram's _bucket/_sum/_count series).
DOCUMENTED_METRICS = frozenset(
    {
        "gecko_collection_runs_total",
        "gecko_collection_duration_seconds_bucket",
        "gecko_collection_duration_seconds_sum",
        "gecko_collection_duration_seconds_count",
        "gecko_collection_records_total",
        "gecko_collection_active",
        "gecko_collector_health_score",
        "gecko_collector_health_status",
        "gecko_collector_consecutive_failures",
        "gecko_collector_last_success_time_seconds",
        "gecko_collector_usual_records",
        "gecko_collector_usual_duration_seconds",
        "gecko_collector_last_records_time_seconds",
        "gecko_alerts_active",
        "gecko_monitor_dropped_total",
    }
)
# Prometheus's own series a dashboard may read too (time() is a function, not a series)
PROMETHEUS_METRICS = frozenset({"up"})


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    provisioning = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert provisioning["apiVersion"] == 1
    return {source["uid"]: source for source in provisioning["datasources"]}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row's
    return [panel for panel in found if panel.get("type") != "row"]


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "gecko-otel"
    assert dashboard["title"] == "gecko-otel collectors"
    assert dashboard["schemaVersion"] >= 36  # datasources referenced by uid
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_datasources_are_fixed_uids_the_provisioning_defines(
    dashboard: dict[str, Any], datasources: dict[str, dict[str, Any]]
) -> None:
    # no import-time ${DS_...} inputs: the dashboard loads as provisioned
    assert "${DS_" not in DASHBOARD.read_text(encoding="utf-8")
    assert "__inputs" not in dashboard
    prometheus = datasources[PROMETHEUS_UID]
    assert prometheus["type"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": PROMETHEUS_UID}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == PROMETHEUS_UID, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == PROMETHEUS_UID, variable["name"]


def test_exemplars_link_to_the_tracing_datasource(
    dashboard: dict[str, Any], datasources: dict[str, dict[str, Any]]
) -> None:
    destinations = datasources[PROMETHEUS_UID]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": TEMPO_UID} in destinations
    assert datasources[TEMPO_UID]["type"] == "tempo"
    duration = [
        panel
        for panel in panels(dashboard)
        if any("gecko_collection_duration_seconds_bucket" in t["expr"] for t in panel["targets"])
    ]
    assert duration, "no panel reads the run-duration histogram"
    for panel in duration:
        assert any(target.get("exemplar") is True for target in panel["targets"]), panel["title"]


def test_dashboard_provider_loads_files(dashboard: dict[str, Any]) -> None:
    provisioning = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"job", "collector"}
    assert variables["job"]["definition"] == "label_values(gecko_collector_health_status, job)"
    collector = variables["collector"]
    assert collector["definition"] == (
        'label_values(gecko_collector_health_status{job=~"$job"}, gecko_collector_type)'
    )
    assert collector["multi"] is True
    assert collector["includeAll"] is True


def test_every_panel_has_a_query_and_a_unit(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["targets"], f"{panel['title']}: no target"
        for target in panel["targets"]:
            assert target.get("expr"), f"{panel['title']}: target {target['refId']} is empty"
        if panel["type"] != "table":
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"


def test_dashboard_reads_only_documented_metrics(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(expr) for expr in expressions(dashboard)))
    assert used, "no metric found in the dashboard's expressions"
    assert used <= DOCUMENTED_METRICS | PROMETHEUS_METRICS, sorted(
        used - DOCUMENTED_METRICS - PROMETHEUS_METRICS
    )


@pytest.mark.integration  # the real promtool binary
def test_every_expression_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        skip_or_fail("promtool is not installed (Debian: apt-get install prometheus)")
    checked = [substitute(expr) for expr in expressions(dashboard)]
    assert checked
    rules = {
        "groups": [
            {
                "name": "dashboard-check",
                "rules": [
                    {"record": f"dashboard:check:panel_{n}", "expr": expr}
                    for n, expr in enumerate(checked)
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard.rules.yml"
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    numbered = "\n".join(f"panel_{n}: {expr}" for n, expr in enumerate(checked))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{numbered}"
    assert f"SUCCESS: {len(checked)} rules found" in result.stdout, result.stdout


def test_metric_names_helper() -> None:
    assert metric_names(
        "sum by (gecko_collector_type, le) (rate(gecko_collection_duration_seconds_bucket"
        '{job=~"$job"}[$__rate_interval]))'
    ) == {"gecko_collection_duration_seconds_bucket"}
    assert metric_names("time() - max by (x) (gecko_collector_last_success_time_seconds > 0)") == {
        "gecko_collector_last_success_time_seconds"
    }
    assert metric_names("count(a == 0) or vector(0)") == {"a"}
    assert metric_names("a / on (x) group_left (y) b offset 5m > bool 1e3") == {"a", "b"}


def test_substitute_fills_grafana_variables() -> None:
    assert substitute('rate(x{job=~"$job"}[$__rate_interval]) / ${__range}') == (
        'rate(x{job=~".*"}[5m]) / 1h'
    )
    with pytest.raises(KeyError):
        substitute("$unknown")
