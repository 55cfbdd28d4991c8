"""`make fleet` (collector-config/run-local.sh) brings the local fleet up and down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support import servers
from support.integration import skip_or_fail

SCRIPT = Path(__file__).parents[2] / "collector-config" / "run-local.sh"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def port_in_use(port: int) -> bool:
    try:
        with servers.direct.open(f"http://127.0.0.1:{port}/", timeout=1):
            return True
    except OSError as exc:
        return "refused" not in str(exc).lower()


def test_the_local_fleet_comes_up_with_our_files_then_stops(tmp_path: Path) -> None:
    # The alerts themselves are proven by test_fleet_end_to_end (1 s intervals).
    servers.binary("prometheus")
    servers.binary("prometheus-alertmanager", "alertmanager")
    if any(port_in_use(port) for port in (9090, 9093, 9465)):
        skip_or_fail("the local fleet's ports 9090, 9093 or 9465 are in use")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GECKO_OTEL_"))}
    env.update(PYTHON=sys.executable, FLEET_SECONDS="35", FLEET_DATA=str(tmp_path))
    with subprocess.Popen(
        ["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as fleet:
        try:
            # Scraped every 15 s: a scrape before the demo listens is retried 15 s later.
            target = wait_for_target(timeout=30)
            rules = servers.get_json("http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
            alertmanager = servers.get_json("http://127.0.0.1:9093/api/v2/status")
            output, _ = fleet.communicate(timeout=40)
        finally:
            if fleet.poll() is None:
                fleet.terminate()
                fleet.wait(10)
    assert fleet.returncode == 0, output
    assert "http://127.0.0.1:9090/alerts" in output
    assert "fleet stopped" in output
    assert target["scrapeUrl"] == "http://127.0.0.1:9465/metrics"
    assert {g["file"] for g in rules} == {
        str(SCRIPT.parent / "prometheus" / "gecko-otel.rules.yml")
    }
    assert "gecko_collector_type" in alertmanager["config"]["original"]
    assert (tmp_path / "fleet.db").exists()
    for port in (9090, 9093, 9465):
        assert not port_in_use(port)


def wait_for_target(timeout: float) -> dict[str, Any]:
    """Prometheus' gecko-otel target, once a scrape of the demo succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            targets = servers.get_json("http://127.0.0.1:9090/api/v1/targets")["data"]
        except OSError:
            targets = {"activeTargets": []}
        for target in targets["activeTargets"]:
            if target["labels"]["job"] == "gecko-otel" and target["health"] == "up":
                return dict(target)
        time.sleep(0.5)
    pytest.fail(f"Prometheus did not scrape the demo within {timeout} s")
