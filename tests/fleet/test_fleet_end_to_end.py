"""collector-config/ on real servers: a real Prometheus scrapes a monitored process
with our prometheus.yml and rules, and alerts a real Alertmanager configured
with our alertmanager.yml, to which the process's in-process handler posts too.

Only what a test on loopback must change is changed in the copies: ports,
intervals (1 s instead of 15 s, so rules fire within seconds) and absolute paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.promql import expressions, metric_names, substitute
from support import servers

CONFIG = Path(__file__).parents[2] / "collector-config"
RULES = CONFIG / "prometheus" / "gecko-otel.rules.yml"
DASHBOARD = CONFIG / "grafana" / "dashboards" / "gecko-otel.json"
#: Series Prometheus makes itself, not the process.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
WAIT = 60.0

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROGRAM = """
import sys, time
from datetime import datetime, timezone
from opentelemetry.exporter.prometheus import PrometheusMetricReader
import gecko_otel
from gecko_otel.handlers import AlertmanagerAlertHandler

monitor = gecko_otel.setup(
    service_name="fleet-e2e",
    metric_readers=[PrometheusMetricReader()],
    alert_handlers=[AlertmanagerAlertHandler(sys.argv[1], resend_interval=5)],
)
monitor.serve_http(port=int(sys.argv[2]))

@gecko_otel.collection("fleet_failing")
def failing():
    raise ConnectionError("the API is down")

@gecko_otel.collection("fleet_ok")
def ok():
    gecko_otel.current_run().add_records(10)

print("serving", flush=True)
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        failing()
    except ConnectionError:
        pass
    ok()
    monitor.record_not_started(
        "fleet_missed", status="missed", scheduled_time=datetime.now(timezone.utc)
    )
    time.sleep(0.5)
"""


def used_metric_names() -> set[str]:
    """The series the rules and the dashboard read that the process must expose
    (recording rules' outputs, named level:metric:operations, are Prometheus' own)."""
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += [substitute(e) for e in expressions(json.loads(DASHBOARD.read_text()))]
    names = set().union(*(metric_names(str(e)) for e in exprs))
    return {n for n in names if ":" not in n} - PROMETHEUS_SERIES


def alert_rule(name: str) -> dict[str, Any]:
    """The alerting rule ``name`` of the rules file (the first, if it has several levels)."""
    rules = yaml.safe_load(RULES.read_text())
    return next(
        rule for group in rules["groups"] for rule in group["rules"] if rule.get("alert") == name
    )


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("fleet")
    am_config = yaml.safe_load((CONFIG / "alertmanager" / "alertmanager.yml").read_text())
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    with servers.alertmanager(workdir / "alertmanager.yml", workdir) as am:
        port = servers.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GECKO_OTEL_"))}
        with subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PROGRAM), am, str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as program:
            try:
                assert program.stdout is not None
                if program.stdout.readline().strip() != "serving":
                    assert program.stderr is not None
                    pytest.fail(f"the monitored program did not start:\n{program.stderr.read()}")
                prom_config = yaml.safe_load((CONFIG / "prometheus" / "prometheus.yml").read_text())
                prom_config["global"].update(scrape_interval="1s", evaluation_interval="1s")
                prom_config["rule_files"] = [str(RULES)]
                am_host = am.removeprefix("http://")
                prom_config["alerting"]["alertmanagers"] = [
                    {"static_configs": [{"targets": [am_host]}]}
                ]
                [job] = [j for j in prom_config["scrape_configs"] if j["job_name"] == "gecko-otel"]
                job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
                prom_config["scrape_configs"] = [job]
                (workdir / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
                with servers.prometheus(workdir / "prometheus.yml", workdir) as prom:
                    yield {
                        "prometheus": prom,
                        "alertmanager": am,
                        "metrics": f"http://127.0.0.1:{port}/metrics",
                    }
            finally:
                program.terminate()
                program.wait(10)


def scraped_names(url: str) -> set[str]:
    with servers.direct.open(url, timeout=5) as response:
        text = response.read().decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_every_metric_the_rules_and_dashboard_use_is_scraped(fleet: dict[str, Any]) -> None:
    wanted = used_metric_names()
    assert "gecko_collection_runs_total" in wanted  # the parsing found the names
    scraped = wait_for(
        "every series to exist",
        lambda: (names := scraped_names(fleet["metrics"])) >= wanted and names,
    )
    assert wanted <= scraped


def prometheus_alerts(fleet: dict[str, Any]) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = servers.get_json(f"{fleet['prometheus']}/api/v1/alerts")["data"][
        "alerts"
    ]
    return alerts


def firing(fleet: dict[str, Any], alertname: str, collector: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prometheus_alerts(fleet)
        if a["labels"]["alertname"] == alertname
        and a["labels"].get("gecko_collector_type") == collector
        and a["state"] == "firing"
    ]


def test_consecutive_failures_fire_in_prometheus_and_reach_alertmanager(
    fleet: dict[str, Any],
) -> None:
    rule = alert_rule("GeckoCollectorConsecutiveFailures")
    assert rule["labels"]["gecko_alert_rule"] == "consecutive_failures"
    [alert] = wait_for(
        "the consecutive-failures rule to fire",
        lambda: firing(fleet, rule["alert"], "fleet_failing"),
    )
    assert alert["labels"]["severity"] == "critical"

    def from_prometheus() -> list[dict[str, Any]]:
        return [
            a
            for a in servers.get_json(f"{fleet['alertmanager']}/api/v2/alerts")
            if a["labels"]["alertname"] == rule["alert"]
            and a["labels"].get("gecko_collector_type") == "fleet_failing"
        ]

    [delivered] = wait_for("Alertmanager to receive it", from_prometheus)
    assert delivered["labels"]["gecko_alert_rule"] == "consecutive_failures"
    assert delivered["labels"]["job"] == "gecko-otel"
    assert [r["name"] for r in delivered["receivers"]] == ["pager"]


def test_a_missed_run_reaches_its_rule(fleet: dict[str, Any]) -> None:
    rule = alert_rule("GeckoCollectorMissedRuns")
    wait_for("the missed-run rule", lambda: firing(fleet, rule["alert"], "fleet_missed"))


def test_in_process_and_prometheus_alerts_share_one_group(fleet: dict[str, Any]) -> None:
    rule = alert_rule("GeckoCollectorConsecutiveFailures")

    def groups() -> list[dict[str, Any]]:
        found = [
            g
            for g in servers.get_json(f"{fleet['alertmanager']}/api/v2/alerts/groups")
            if g["labels"].get("gecko_collector_type") == "fleet_failing"
        ]
        sources = {
            "prometheus" if "job" in a["labels"] else "in-process"
            for g in found
            for a in g["alerts"]
            if a["labels"]["gecko_alert_rule"] == "consecutive_failures"
        }
        return found if sources == {"prometheus", "in-process"} else []

    [group] = wait_for("both alerts in Alertmanager", groups)
    assert group["labels"] == {"gecko_collector_type": "fleet_failing"}
    assert group["receiver"]["name"] == "pager"
    names = {a["labels"]["alertname"] for a in group["alerts"]}
    assert {rule["alert"], "consecutive_failures"} <= names
    in_process = next(a for a in group["alerts"] if "job" not in a["labels"])
    assert in_process["labels"]["service_name"] == "fleet-e2e"
