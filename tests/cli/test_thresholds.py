"""``gecko-otel thresholds`` on a real store: show, set, unset, reset, and errors."""

from __future__ import annotations

from typing import Any

import pytest

from cli.conftest import Filled
from gecko_otel._config import THRESHOLD_FIELDS


def _values(document: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    return {t["name"]: (t["value"], t["source"]) for t in document["thresholds"]}


def test_show_set_unset_and_reset(
    cli: Any, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = filled.url
    monkeypatch.setenv("GECKO_OTEL_STALE_AFTER", "3600")
    shown = cli("thresholds", "--database-url", url, "--json").json()
    assert shown["schema_version"] == 1
    assert shown["command"] == "thresholds"
    assert shown["collector_type"] is None
    assert [t["name"] for t in shown["thresholds"]] == list(THRESHOLD_FIELDS)
    values = _values(shown)
    assert values["max_consecutive_failures"] == (3, "default")
    assert values["stale_after"] == (3600.0, "environment")
    assert values["min_records_per_second"] == (None, "default")

    every = cli(
        "thresholds",
        "--database-url",
        url,
        "--set",
        "max_execution_time=10m",
        "--set",
        "min_records_per_second=off",
    )
    assert every.code == 0, every.err
    assert "stored max_execution_time = 10.0 min for every collector" in every.out
    assert "stored min_records_per_second = off for every collector" in every.out

    one = cli(
        "thresholds",
        "--database-url",
        url,
        "trades",
        "--set",
        "max_consecutive_failures=5",
        "--json",
    ).json()
    assert [(c["collector_type"], c["name"], c["value"]) for c in one["changed"]] == [
        ("trades", "max_consecutive_failures", 5.0)
    ]
    assert one["changed"][0]["updated_by"]
    values = _values(one)
    assert values["max_consecutive_failures"] == (5, "stored")
    assert values["max_execution_time"] == (600.0, "stored (all)")
    assert values["min_records_per_second"] == (None, "stored (all)")
    assert values["stale_after"] == (3600.0, "environment")
    # Another collector sees the values for every collector, not trades'.
    pools = _values(cli("thresholds", "--database-url", url, "pools", "--json").json())
    assert pools["max_consecutive_failures"] == (3, "default")
    assert pools["max_execution_time"] == (600.0, "stored (all)")

    table = cli("thresholds", "--database-url", url, "trades")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["THRESHOLD", "VALUE", "FROM", "SET", "BY"]
    assert any(line.split()[:3] == ["max_consecutive_failures", "5", "stored"] for line in lines)
    assert all(len(line) <= 80 for line in lines)

    unset = cli("thresholds", "--database-url", url, "--unset", "max_execution_time", "--json")
    assert unset.json()["removed"] == 1
    assert _values(unset.json())["max_execution_time"] == (300.0, "default")
    reset = cli("thresholds", "--database-url", url, "trades", "--reset")
    assert "removed 1 stored value for trades" in reset.out
    after = _values(cli("thresholds", "--database-url", url, "trades", "--json").json())
    assert after["max_consecutive_failures"] == (3, "default")
    assert after["min_records_per_second"] == (None, "stored (all)")


def test_collector_and_database_in_either_order(cli: Any, filled: Filled) -> None:
    if not filled.url.startswith("sqlite"):
        pytest.skip("a SQLite file name is the positional form")
    path = filled.url.removeprefix("sqlite:///")
    first = cli("thresholds", path, "trades", "--set", "stale_after=2h", "--json")
    assert first.code == 0, first.err
    second = cli("thresholds", "trades", path, "--json")
    assert second.code == 0, second.err
    assert _values(second.json())["stale_after"] == (7200.0, "stored")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--set", "max_consecutive_failure=2"), "'max_consecutive_failure' is not a threshold"),
        (("--set", "max_consecutive_failures=2.5"), "give a whole number"),
        (("--set", "max_consecutive_failures=0"), "max_consecutive_failures must be a positive"),
        (("--set", "stale_after=soon"), "give a duration such as 90s, 10m or 2h"),
        (("--set", "min_success_rate=120"), "min_success_rate must be between 0 and 100"),
        (("--set", "min_records_per_second=lots"), "give a number or off"),
        (("--set", "stale_after"), "write NAME=VALUE"),
        (("--unset", "nope"), "'nope' is not a threshold"),
    ],
)
def test_bad_changes_are_one_line_and_change_nothing(
    cli: Any, filled: Filled, argv: tuple[str, ...], message: str
) -> None:
    result = cli("thresholds", "--database-url", filled.url, *argv)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err
    document = cli("thresholds", "--database-url", filled.url, "--json").json()
    assert {t["source"] for t in document["thresholds"]} == {"default"}
