"""``gecko-otel silence``, ``silences`` and ``unsilence`` on a real store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from cli.conftest import Filled


def test_silence_list_and_unsilence(cli: Any, filled: Filled) -> None:
    url = filled.url
    made = cli("silence", "--database-url", url, "trades", "--for", "2h", "--comment", "503s")
    assert made.code == 0, made.err
    assert made.out.startswith("silence 1: trades (every rule) until ")
    # status says what is silenced, and for how long.
    assert (
        "silenced: trades 1h left (gecko-otel silences)" in cli("status", "--database-url", url).out
    )
    silenced = cli("status", "--database-url", url, "--json").json()["silences"]
    assert [(s["collector_type"], s["active"]) for s in silenced] == [("trades", True)]

    doc = cli(
        "silence", "--database-url", url, "pools", "--for", "30m", "--rule", "stale", "--json"
    )
    assert doc.code == 0, doc.err
    document = doc.json()
    assert document["schema_version"] == 1
    assert document["command"] == "silence"
    pools = document["silence"]
    assert (pools["id"], pools["collector_type"], pools["rule"], pools["active"]) == (
        2,
        "pools",
        "stale",
        True,
    )
    length = datetime.fromisoformat(pools["ends_at"]) - datetime.fromisoformat(pools["starts_at"])
    assert length == timedelta(minutes=30)
    assert pools["created_by"]

    listed = cli("silences", "--database-url", url, "--json").json()
    assert listed["command"] == "silences"
    assert [(s["id"], s["comment"]) for s in listed["silences"]] == [(2, None), (1, "503s")]
    table = cli("silences", "--database-url", url)
    assert table.code == 0
    assert "trades" in table.out
    assert "(all)" in table.out
    assert "503s" in table.out

    ended = cli("unsilence", "--database-url", url, "1", "--json").json()
    assert [(s["id"], s["active"]) for s in ended["ended"]] == [(1, False)]
    assert [
        s["id"] for s in cli("silences", "--database-url", url, "--json").json()["silences"]
    ] == [2]
    # Ended silences stay listed with --all.
    every = cli("silences", "--database-url", url, "--all", "--json").json()["silences"]
    assert [(s["id"], s["ended_at"] is not None) for s in every] == [(2, False), (1, True)]
    assert "ended" in cli("silences", "--database-url", url, "--all").out

    # Already ended: nothing to do, not an error.
    again = cli("unsilence", "--database-url", url, "1")
    assert (again.code, again.out) == (0, "no active silence matched; nothing to do\n")

    by_collector = cli(
        "unsilence", "--database-url", url, "--collector", "pools", "--rule", "stale"
    )
    assert by_collector.code == 0
    assert by_collector.out.startswith("ended silence 2: pools (rule stale)")
    assert cli("silences", "--database-url", url).out == "no active silence\n"


def test_database_as_first_argument(cli: Any, filled: Filled) -> None:
    if not filled.url.startswith("sqlite"):
        pytest.skip("a SQLite file name is the positional form")
    path = filled.url.removeprefix("sqlite:///")
    assert cli("silence", path, "trades", "--for", "1h").code == 0
    assert [s["id"] for s in cli("silences", path, "--json").json()["silences"]] == [1]
    assert cli("unsilence", path, "1").code == 0
    assert cli("silences", path, "--json").json()["silences"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("silence", "a\x00b", "--for", "1h"), "NUL character"),
        (("unsilence",), "give a SILENCE_ID or --collector"),
        (("unsilence", "1", "--collector", "pools"), "give a SILENCE_ID or --collector"),
        (("unsilence", "--rule", "stale", "1"), "--rule goes with --collector"),
        (("unsilence", "abc"), "'abc' is not a silence id"),
        (("unsilence", "99"), "no silence 99"),
    ],
)
def test_errors_are_one_line(cli: Any, filled: Filled, argv: tuple[str, ...], message: str) -> None:
    command, *rest = argv
    result = cli(command, "--database-url", filled.url, *rest)
    assert result.code == 2
    assert message in result.err
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err


@pytest.mark.parametrize("length", ["0s", "soon"])
def test_silence_needs_a_positive_duration(cli: Any, filled: Filled, length: str) -> None:
    result = cli("silence", "--database-url", filled.url, "trades", "--for", length)
    assert result.code == 2
    assert "--for" in result.err
    assert cli("silences", "--database-url", filled.url, "--all", "--json").json()["silences"] == []
