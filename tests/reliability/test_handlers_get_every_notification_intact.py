"""Guarantee: every handler gets every notification, and the same one.

An ``async def`` handler used to be accepted and never run, silently; it is
awaited on its dispatcher lane. ``Alert.metadata`` used to be one mutable
dict shared by every handler, so one handler's change reached the next; it
is read-only now.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import gecko_otel
from gecko_otel import Alert, Notification
from gecko_otel.testing import FakeClock, capture_runs


def fail_three(monitor: gecko_otel.Monitor) -> None:
    for _ in range(3):
        try:
            with gecko_otel.track_collection("pools", monitor=monitor):
                raise RuntimeError("down")
        except RuntimeError:
            pass


def test_an_async_handler_is_awaited() -> None:
    heard: list[tuple[str, Notification | None, bool]] = []

    async def handler(alert: Alert) -> None:
        await asyncio.sleep(0)
        heard.append((alert.rule, alert.notification, asyncio.get_running_loop().is_running()))

    with capture_runs(clock=FakeClock(), watchdog=False) as captured:
        captured.monitor.add_alert_handler(handler)
        fail_three(captured.monitor)
        assert captured.monitor.force_flush()
        assert heard == [("consecutive_failures", Notification.FIRING, True)]


def test_an_async_handler_that_raises_is_counted(
    internal_errors: list[tuple[str, BaseException]],
) -> None:
    async def handler(alert: Alert) -> None:
        raise ConnectionError("pager down")

    with capture_runs(clock=FakeClock(), watchdog=False) as captured:
        captured.monitor.add_alert_handler(handler)
        fail_three(captured.monitor)
        assert captured.monitor.force_flush()
        assert captured.monitor.system_health().dropped["handler_errors"] == 1
    assert internal_errors == []  # a handler's failure is the handler's, not ours


def test_handlers_cannot_change_what_the_next_one_gets() -> None:
    seen: list[dict[str, Any]] = []

    def vandal(alert: Alert) -> None:
        with pytest.raises(TypeError):
            alert.metadata["consecutive_failures"] = 0  # type: ignore[index]
        seen.append(json.loads(json.dumps(alert.to_dict()))["metadata"])

    def reader(alert: Alert) -> None:
        seen.append(alert.to_dict()["metadata"])

    with capture_runs(clock=FakeClock(), watchdog=False) as captured:
        captured.monitor.add_alert_handler(vandal)
        captured.monitor.add_alert_handler(reader)
        fail_three(captured.monitor)
        assert captured.monitor.force_flush()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0]  # the figures that fired it are there


def test_nested_metadata_is_read_only_and_still_json() -> None:
    alert = Alert(
        id="a",
        level=gecko_otel.AlertLevel.WARNING,
        collector_type="pools",
        rule="r",
        message="m",
        timestamp=gecko_otel.ExecutionRecord.__dataclass_fields__
        and __import__("datetime").datetime.now(),
        metadata={"nested": {"k": [1, 2]}},
    )
    with pytest.raises(TypeError):
        alert.metadata["nested"]["k"] = 3  # type: ignore[index]
    assert json.loads(json.dumps(alert.to_dict()))["metadata"] == {"nested": {"k": [1, 2]}}
