"""The example programs `make demo` runs: they run, and show what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_monitoring_demo_shows_an_alert_and_a_silent_collapse(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GECKO_OTEL_"))},
        "GECKO_OTEL_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "monitoring_demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "firing    critical price_collector/consecutive_failures" in out
    assert "resolved  critical price_collector/consecutive_failures" in out
    # Every run of new_pools_collector succeeds; its baseline sees the collapse.
    assert "firing    warning  new_pools_collector/records_anomaly: collected 3 records" in out
