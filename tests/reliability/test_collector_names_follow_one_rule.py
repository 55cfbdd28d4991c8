"""Guarantee: one rule for collector names, applied everywhere.

A name must be a non-empty string without NUL or lone surrogates (neither can
be encoded for OTLP, SQL or Alertmanager) and at most 255 characters. Every
entry point refuses a bad name with the same ``ConfigError``; names gecko-otel
did not choose (APScheduler job ids, ``os.fsdecode`` of a file name) are made
usable instead. A lone surrogate used to be accepted and then broke
``export()``, ``history()`` and ``statistics()`` on a store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

import gecko_otel
from gecko_otel import ConfigError, MonitorConfig
from gecko_otel._capture.decorators import usable_collector_type
from gecko_otel.testing import CapturedRuns
from support.store_helpers import stored_monitor

SURROGATE = os.fsdecode(b"pools-\xff")  # 'pools-\udcff'
BAD_NAMES = ["", "   ", "a\x00b", SURROGATE, "x" * 256, 42]


def _decorate(name: Any) -> None:
    gecko_otel.collection(name)(lambda: None)


def _track(name: Any) -> None:
    with gecko_otel.track_collection(name):
        pass


ENTRY_POINTS: dict[str, Callable[[CapturedRuns, Any], object]] = {
    "@collection": lambda c, name: _decorate(name),
    "track_collection": lambda c, name: _track(name),
    "Monitor.expect": lambda c, name: c.monitor.expect(name, every=60),
    "Monitor.suppress": lambda c, name: c.monitor.suppress(name, duration=60),
    "Monitor.record_not_started": lambda c, name: c.monitor.record_not_started(
        name, "missed", scheduled_time=datetime.now(timezone.utc)
    ),
    "MonitorConfig.collectors": lambda c, name: MonitorConfig(collectors={name: None}),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_every_entry_point_refuses_a_bad_name(
    captured: CapturedRuns, entry: str, name: object
) -> None:
    with pytest.raises(ConfigError, match="collector_type"):
        ENTRY_POINTS[entry](captured, name)
    assert captured.runs == []


def test_names_gecko_otel_did_not_choose_are_made_usable() -> None:
    assert usable_collector_type(SURROGATE) == "pools-\ufffd"
    assert usable_collector_type("a\x00b") == "a\ufffdb"
    long = usable_collector_type("y" * 1000)
    assert len(long) == 255
    for name in (SURROGATE, "a\x00b", "y" * 1000):
        gecko_otel.collection(usable_collector_type(name))(lambda: None)  # accepted


def test_a_made_usable_name_works_through_a_store(store_url: str) -> None:
    name = usable_collector_type(SURROGATE)
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        with gecko_otel.track_collection(name, monitor=m) as run:
            run.add_records(2)
        assert m.force_flush()
        [record] = m.history(name)
        assert record.collector_type == "pools-\ufffd"
        assert m.statistics(name).total_executions == 1
        assert name in m.export()["collectors"]
