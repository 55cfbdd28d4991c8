"""collector-config/ checked by the real tools: promtool (Prometheus) validates the scrape
configuration and the rules and runs the rules' unit tests, amtool (Alertmanager) validates
alertmanager.yml and resolves routes. Plus what the tools do not check: every alert has the
labels and annotations Alertmanager and people rely on, and a unit test that fires it and
one that does not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gecko_otel._values import health
from support.integration import skip_or_fail

CONFIG = Path(__file__).parents[2] / "collector-config"
PROMETHEUS_YML = CONFIG / "prometheus" / "prometheus.yml"
RULES = CONFIG / "prometheus" / "gecko-otel.rules.yml"
RULE_TESTS = CONFIG / "prometheus" / "gecko-otel.rules.test.yml"
ALERTMANAGER_YML = CONFIG / "alertmanager" / "alertmanager.yml"

SEVERITIES = {"info", "warning", "error", "critical"}
IN_PROCESS_RULES = {value for name, value in vars(health).items() if name.startswith("RULE_")}
# Prometheus-only rules: what a process cannot report about itself, and the SLO burn rate
PROMETHEUS_ONLY_RULES = {"not_reporting", "success_budget_burn"}
PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool of Prometheus or Alertmanager; skip (or fail in CI) when it is missing."""
    path = shutil.which(tool)
    if path is None:
        skip_or_fail(f"{tool} is not installed (Debian: apt-get install {PACKAGES[tool]})")
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=300, check=False)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"


def alerting_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"] if "alert" in rule]


def alert_cases() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    return [case for test in loaded["tests"] for case in test.get("alert_rule_test", [])]


@pytest.mark.integration
def test_prometheus_config_and_the_rule_files_it_names_are_valid() -> None:
    result = run("promtool", "check", "config", str(PROMETHEUS_YML))
    assert_ok(result)
    assert "1 rule files found" in result.stdout


@pytest.mark.integration
def test_rules_are_valid_and_have_no_duplicates() -> None:
    assert_ok(run("promtool", "check", "rules", "--lint-fatal", str(RULES)))


@pytest.mark.integration
def test_rule_unit_tests_pass() -> None:
    assert_ok(run("promtool", "test", "rules", str(RULE_TESTS)))


@pytest.mark.integration
def test_alertmanager_config_is_valid() -> None:
    assert_ok(run("amtool", "check-config", str(ALERTMANAGER_YML)))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ("severity=critical gecko_collector_type=weather", "pager"),
        ("severity=warning gecko_collector_type=weather", "default"),
        ("severity=error gecko_collector_type=weather", "default"),
        ("severity=info gecko_collector_type=weather", "default"),
        # dex_ collectors go to their team, and on (continue: true) by severity
        ("severity=critical gecko_collector_type=dex_pools", "dex-team,pager"),
        ("severity=warning gecko_collector_type=dex_pools", "dex-team,default"),
    ],
)
def test_alerts_route_by_severity_and_dex_collectors_also_to_their_team(
    labels: str, receivers: str
) -> None:
    result = run(
        "amtool",
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_YML}",
        f"--verify.receivers={receivers}",
        *labels.split(),
    )
    assert_ok(result)
    assert result.stdout.strip() == receivers


def test_every_alert_has_a_severity_rule_summary_and_description() -> None:
    rules = alerting_rules()
    assert rules
    for rule in rules:
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, rule["alert"]
        assert labels.get("gecko_alert_rule") in IN_PROCESS_RULES | PROMETHEUS_ONLY_RULES, rule[
            "alert"
        ]
        assert annotations.get("summary"), rule["alert"]
        assert annotations.get("description"), rule["alert"]


def test_every_alert_has_a_test_where_it_fires_and_one_where_it_does_not() -> None:
    cases = alert_cases()
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    stays_quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in alerting_rules()}
    assert names - fires == set(), "no test where these fire"
    assert names - stays_quiet == set(), "no test where these do not fire"


def test_rule_tests_evaluate_every_group_in_file_order() -> None:
    # Else promtool picks a random order and an alert may read last minute's recorded series.
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["group_eval_order"] == [group["name"] for group in rules["groups"]]
