"""Every command against a SQLite file and a real PostgreSQL filled by a real Monitor."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from cli.conftest import Filled, _one


def _fits(text: str) -> None:
    assert text.strip()
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_status_lists_worst_first(filled: Filled, cli: Any) -> None:
    result = cli("status", "--database-url", filled.url)
    assert result.code == 0, result.err
    _fits(result.out)
    lines = result.out.splitlines()
    assert lines[1].split()[:2] == ["trades", "critical"]
    assert "\x1b[" not in result.out  # no colour off a terminal
    doc = cli("status", "--database-url", filled.url, "--json").json()
    assert doc["schema_version"] == 1
    assert doc["command"] == "status"
    assert doc["overall"] == "critical"
    names = [c["collector_type"] for c in doc["collectors"]]
    assert names[0] == "trades"
    assert set(names) == {"pools", "ohlcv", "trades"}
    trades = doc["collectors"][0]
    assert trades["health"] == "critical"
    assert trades["consecutive_failures"] == 3
    assert trades["success_rate"] == 0.0
    assert trades["active_alerts"] == 1
    assert trades["worst_alert_level"] == "critical"
    assert trades["last_success"] is None
    pools = next(c for c in doc["collectors"] if c["collector_type"] == "pools")
    assert pools["success_rate"] == 100.0
    assert pools["runs_counted"] == 4
    assert pools["p95_duration"] is not None
    assert pools["last_status"] == "success"


def test_status_check_exit_codes(filled: Filled, cli: Any, tmp_path: Path) -> None:
    assert cli("status", "--database-url", filled.url, "--check").code == 1
    assert cli("status", "--database-url", filled.url, "--check", "--json").code == 1
    # Without --check the status is informational.
    assert cli("status", "--database-url", filled.url).code == 0


def test_history_filters_newest_first(filled: Filled, cli: Any) -> None:
    doc = cli("history", "--database-url", filled.url, "--json").json()
    assert doc["schema_version"] == 1
    starts = [r["start_time"] for r in doc["runs"]]
    assert starts == sorted(starts, reverse=True)
    assert len(doc["runs"]) == 8
    failed = cli("history", "--database-url", filled.url, "--status", "failure", "--json").json()
    assert {r["execution_id"] for r in failed["runs"]} == set(filled.runs["trades"])
    pools = cli("history", "pools", "--database-url", filled.url, "--limit", "2", "--json").json()
    assert [r["execution_id"] for r in pools["runs"]] == filled.runs["pools"][::-1][:2]
    assert cli("history", "--database-url", filled.url, "--since", "2h", "--json").json()["runs"]
    table = cli("history", "--database-url", filled.url)
    assert table.code == 0
    _fits(table.out)
    assert filled.runs["trades"][-1][-10:] in table.out


def test_show_one_run_with_its_trace(filled: Filled, cli: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("GECKO_OTEL_TRACE_URL", "https://traces.example/trace/{trace_id}")
    wanted = filled.runs["trades"][0]
    doc = cli("show", "--database-url", filled.url, wanted, "--json").json()
    run = doc["run"]
    assert run["execution_id"] == wanted
    assert run["status"] == "failure"
    assert run["error_type"] == "RuntimeError"
    assert run["metadata"] == {"network": "solana"}
    assert len(run["trace_id"]) == 32
    assert doc["trace_url"] == f"https://traces.example/trace/{run['trace_id']}"
    # The part history shows is enough.
    text = cli("show", "--database-url", filled.url, wanted[-10:])
    assert text.code == 0
    assert wanted in text.out
    assert run["trace_id"] in text.out
    assert "upstream 503" in text.out


def test_alerts_ack_and_resolve(filled: Filled, cli: Any) -> None:
    doc = cli("alerts", "--database-url", filled.url, "--json").json()
    [alert] = doc["alerts"]
    assert alert["id"] == filled.alert_id
    assert alert["state"] == "firing"
    assert alert["collector_type"] == "trades"
    assert (
        cli("alerts", "--database-url", filled.url, "--level", "info", "--json").json()["alerts"]
        == []
    )
    listed = cli("alerts", "--database-url", filled.url)
    _fits(listed.out)
    assert filled.alert_id[-10:] in listed.out

    acked = cli("ack", "--database-url", filled.url, filled.alert_id[-10:])
    assert acked.code == 0, acked.err
    assert "acknowledged" in acked.out
    [alert] = cli("alerts", "--database-url", filled.url, "--json").json()["alerts"]
    assert alert["state"] == "acknowledged"

    assert cli("resolve", "--database-url", filled.url, filled.alert_id).code == 0
    assert cli("alerts", "--database-url", filled.url, "--json").json()["alerts"] == []
    [alert] = cli("alerts", "--all", "--database-url", filled.url, "--json").json()["alerts"]
    assert alert["state"] == "resolved"
    again = cli("resolve", "--database-url", filled.url, filled.alert_id)
    assert again.code == 0
    assert "already" in again.out


def test_stats(filled: Filled, cli: Any) -> None:
    doc = cli("stats", "--database-url", filled.url, "--json").json()
    by_name = {s["collector_type"]: s for s in doc["statistics"]}
    assert by_name["pools"]["total_executions"] == 4
    assert by_name["pools"]["total_records_collected"] == 100
    assert by_name["trades"]["failed_executions"] == 3
    assert by_name["ohlcv"]["partial_executions"] == 1
    assert doc["baselines"] == []  # a handful of runs: still warming up, not stored
    one = cli("stats", "trades", "--database-url", filled.url, "--window", "1h", "--json").json()
    assert [s["collector_type"] for s in one["statistics"]] == ["trades"]
    assert one["window_seconds"] == 3600.0
    _fits(cli("stats", "--database-url", filled.url).out)


def test_export_streams_every_run(filled: Filled, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    result = cli("export", "--database-url", filled.url, "-o", str(out))
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    assert [r["start_time"] for r in rows] == sorted(r["start_time"] for r in rows)
    csv_out = tmp_path / "trades.csv"
    args = ("export", "--format", "csv", "--collector", "trades", "-o", str(csv_out))
    assert cli(*args, "--database-url", filled.url).code == 0
    with open(csv_out, newline="") as handle:
        assert {r["execution_id"] for r in csv.DictReader(handle)} == set(filled.runs["trades"])
    to_stdout = cli("export", "--database-url", filled.url, "--status", "partial")
    assert len(to_stdout.out.splitlines()) == 1


def test_prune_counts_then_deletes(filled: Filled, cli: Any) -> None:
    dry = cli("prune", "--database-url", filled.url, "--older-than", "1d", "--dry-run", "--json")
    assert dry.json()["rows"]["execution_history"] == 0
    time.sleep(1.1)
    counted = cli(
        "prune", "--database-url", filled.url, "--older-than", "1s", "--dry-run", "--json"
    ).json()
    assert counted["dry_run"] is True
    assert counted["rows"]["execution_history"] == 8
    assert len(cli("history", "--database-url", filled.url, "--json").json()["runs"]) == 8
    done = cli("prune", "--database-url", filled.url, "--older-than", "1s", "--json").json()
    assert done["rows"]["execution_history"] == 8
    assert cli("history", "--database-url", filled.url, "--json").json()["runs"] == []
    # The firing alert is active: never pruned.
    assert len(cli("alerts", "--database-url", filled.url, "--json").json()["alerts"]) == 1


def test_stats_shows_the_stored_baselines(store_url: str, cli: Any) -> None:
    from support.store_helpers import stored_monitor

    with stored_monitor(store_url) as stored:  # stored once more as it shuts down
        for i in range(25):
            _one(stored.monitor, "pools", records=100 + i)
        _one(stored.monitor, "trades", fail=True)
    doc = cli("stats", "--database-url", store_url, "--json").json()
    [pools] = doc["baselines"]  # learned from successful runs, once warmed up
    assert (pools["collector_type"], pools["runs"]) == ("pools", 25)
    assert 100 <= pools["usual_records"]["median"] <= 125
    assert pools["usual_duration"]["median"] > 0
    table = cli("stats", "--database-url", store_url).out
    assert "USUAL RECORDS (RANGE)" in table
    assert "pools" in table.split("USUAL RECORDS (RANGE)")[1]
