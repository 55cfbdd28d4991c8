"""Helpers the test modules share: run a collector once, the way user code would, and
capture runs on a fake clock."""

from __future__ import annotations

import time
from typing import Any

from gecko_otel import MonitorConfig, track_collection
from gecko_otel.testing import FakeClock, capture_runs


def run(
    collector: str,
    *,
    fail: bool = False,
    records: int = 0,
    warn: bool = False,
    sleep: float = 0.0,
    monitor: Any = None,
) -> None:
    """One run of ``collector``: optionally records, a warning, a delay, a failure."""
    try:
        with track_collection(collector, monitor=monitor) as r:
            r.add_records(records)
            if warn:
                r.warn("w")
            if sleep:
                time.sleep(sleep)
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass


def watched(clock: FakeClock, **config: Any) -> Any:
    """``capture_runs`` on ``clock``, without the watchdog thread (tests call ``evaluate()``).

    Success-rate rule off unless a test asks for it, so each test sees one rule.
    """
    config.setdefault("min_runs_for_rate", 1000)
    return capture_runs(MonitorConfig(**config), clock=clock, watchdog=False)
