"""A store filled by a real Monitor running real collections over two simulated days.

The OpenTelemetry SDK stamps spans with ``opentelemetry.sdk.trace.time_ns``
and the Monitor's pipeline reads its `FakeClock`: both are moved together,
an hour per round, so runs, alerts and their acknowledgement land where a
real two days would put them (run times themselves are real).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

import gecko_otel
from gecko_otel import CollectorThresholds
from gecko_otel.testing import FakeClock
from support.store_helpers import stored_monitor

HOSTILE = "<script>alert(1)</script>"
HOSTILE_NOTE = '"><img src=x onerror="alert(2)">'
HOURS = 48
#: Collectors the filled store holds, each with runs in the window.
COLLECTORS = ("pools", "slow", "trades", HOSTILE)


@dataclass
class Filled:
    url: str
    now: datetime
    runs: int


@pytest.fixture
def span_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move the wall clock the SDK stamps spans with (seconds, signed)."""
    offset = [0]
    monkeypatch.setattr(
        "opentelemetry.sdk.trace.time_ns", lambda: time.time_ns() + offset[0], raising=True
    )

    def move(seconds: float) -> None:
        offset[0] += int(seconds * 1e9)

    return move


def fill(url: str, move_spans: Callable[[float], None]) -> Filled:
    """Two days, one round an hour: ``pools`` succeeds with records, ``trades`` fails
    four times in a row (a critical alert, acknowledged, then resolved), ``slow``
    runs over its 1 ms threshold (a ``slow_execution`` alert recording it), and a
    collector with a hostile name and metadata ends partial."""
    move_spans(-HOURS * 3600)
    clock = FakeClock(time.time() - HOURS * 3600)
    config = {"collectors": {"slow": CollectorThresholds(max_execution_time=0.001)}}
    runs = 0
    with stored_monitor(url, clock=clock, **config) as sm:
        m = sm.monitor
        for hour in range(HOURS):
            with gecko_otel.track_collection("pools", monitor=m) as run:
                run.add_records(100 + hour)
            with gecko_otel.track_collection(
                HOSTILE, monitor=m, metadata={"note": HOSTILE_NOTE}
            ) as run:
                run.add_records(3)
                run.warn(HOSTILE_NOTE)
            with gecko_otel.track_collection("slow", monitor=m):
                time.sleep(0.003)
            try:
                with gecko_otel.track_collection("trades", monitor=m) as run:
                    if 10 <= hour < 14:
                        raise RuntimeError(f"upstream said {HOSTILE}")
                    run.add_records(7)
            except RuntimeError:
                pass
            runs += 4
            if hour == 13:
                (active,) = m.alerts(collector_type="trades")
                m.acknowledge_alert(active.id)
            clock.advance(hours=1)
            move_spans(3600)
        assert m.force_flush()
    return Filled(url, datetime.now(timezone.utc), runs)


@pytest.fixture
def filled(store_url: str, span_clock: Callable[[float], None]) -> Filled:
    return fill(store_url, span_clock)
