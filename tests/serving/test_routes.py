"""Every route's status code and content, from a store (SQLite, PostgreSQL) and a Monitor."""

from __future__ import annotations

from pathlib import Path

import pytest

from gecko_otel import ConfigError
from gecko_otel.serving import SCHEMA_VERSION, StatusServer, StoreSource
from support.status import HOSTILE, HOSTILE_TEXT, fetch, run
from support.store_helpers import StoredMonitor, stored_monitor


def _check_status_document(document: dict, source: str) -> None:
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["source"] == source
    assert document["status"] == "critical"
    by_name = {c["collector_type"]: c for c in document["collectors"]}
    assert sorted(by_name) == sorted(["pools", "trades", HOSTILE])
    pools, trades = by_name["pools"], by_name["trades"]
    assert pools["status"] == "healthy"
    assert trades["status"] == "critical"
    assert trades["consecutive_failures"] == 3
    assert pools["total_executions"] == 3
    assert [r["status"] for r in pools["recent_runs"]] == ["success"] * 3
    assert pools["recent_runs"][0]["records_collected"] == 3
    assert pools["last_run"] == pools["recent_runs"][0]["start_time"]
    assert [r["status"] for r in trades["recent_runs"]] == ["failure"] * 3
    assert trades["issues"], "a critical collector says why"
    assert by_name[HOSTILE]["recent_runs"][0]["status"] == "partial"
    assert document["collectors_by_status"]["critical"] == 1
    assert document["active_alerts"]["critical"] >= 1
    alerts = document["alerts"]
    assert [a["collector_type"] for a in alerts if a["level"] == "critical"] == ["trades"]
    assert set(document["server"]) == {
        "refused_connections",
        "timed_out_requests",
        "oversized_requests",
    }


def test_a_store_is_served_with_its_stored_health_runs_and_alerts(
    store_server: StatusServer,
) -> None:
    reply = fetch(store_server, "/status")
    assert reply.status == 503, "a critical collector fails the probe"
    assert reply.headers["content-type"] == "application/json"
    _check_status_document(reply.json(), "store")


def test_a_monitor_is_served_from_memory(monitor_server: tuple) -> None:
    _monitor, server = monitor_server
    reply = fetch(server, "/status")
    assert reply.status == 503
    _check_status_document(reply.json(), "monitor")


def test_status_is_200_when_nothing_is_critical(tmp_path: Path) -> None:
    with stored_monitor(None) as stored:
        run(stored.monitor, "pools")
        run(stored.monitor, "trades", fail=True)  # one failure: not critical
        server = stored.monitor.serve_http(port=0)
        reply = fetch(server, "/status")
        assert reply.status == 200, reply.json()
        assert reply.json()["status"] == "healthy"
        for _ in range(2):
            run(stored.monitor, "trades", fail=True)
        assert fetch(server, "/status").status == 503


def test_probe_false_answers_200_with_the_same_document(any_server: StatusServer) -> None:
    reply = fetch(any_server, "/status?probe=false")
    assert reply.status == 200
    assert reply.json()["status"] == "critical"


def test_probes(any_server: StatusServer) -> None:
    live = fetch(any_server, "/healthz")
    assert (live.status, live.json()) == (200, {"schema_version": SCHEMA_VERSION, "status": "ok"})
    ready = fetch(any_server, "/readyz")
    assert (ready.status, ready.json()["ready"], ready.json()["reason"]) == (200, True, None)


def test_runs_of_one_collector_newest_first_with_a_limit(any_server: StatusServer) -> None:
    reply = fetch(any_server, "/runs?collector=trades&limit=2")
    assert reply.status == 200
    document = reply.json()
    assert document["collector"] == "trades"
    runs = document["runs"]
    assert len(runs) == 2
    assert {r["collector_type"] for r in runs} == {"trades"}
    assert runs[0]["start_time"] >= runs[1]["start_time"]
    assert runs[0]["error_type"] == "RuntimeError"
    every = fetch(any_server, "/runs").json()["runs"]
    assert len(every) == 7
    assert fetch(any_server, "/runs?collector=nobody").json()["runs"] == []


def test_alerts_active_filtered_and_limited(any_server: StatusServer) -> None:
    alerts = fetch(any_server, "/alerts").json()["alerts"]
    assert alerts and all(a["state"] != "resolved" for a in alerts)
    critical = fetch(any_server, "/alerts?level=critical&collector=trades").json()["alerts"]
    assert [(a["collector_type"], a["rule"]) for a in critical] == [
        ("trades", "consecutive_failures")
    ]
    assert fetch(any_server, "/alerts?collector=pools").json()["alerts"] == []
    assert len(fetch(any_server, "/alerts?limit=1&resolved=true").json()["alerts"]) == 1


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/runs?limit=0", "limit"),
        ("/runs?limit=1001", "limit"),
        ("/runs?limit=abc", "limit"),
        ("/runs?collector=a&collector=b", "collector"),
        ("/alerts?level=loud", "loud"),
        ("/status?probe=maybe", "probe"),
    ],
)
def test_bad_parameters_are_400_and_say_which(
    any_server: StatusServer, path: str, word: str
) -> None:
    reply = fetch(any_server, path)
    assert reply.status == 400
    assert word in reply.json()["error"]


def test_unknown_paths_are_404(any_server: StatusServer) -> None:
    for path in ("/metrics/", "/status/", "/admin", "/../etc/passwd"):
        assert fetch(any_server, path).status == 404, path


def test_only_get_and_head(any_server: StatusServer) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = fetch(any_server, "/alerts", method=method)
        assert reply.status == 405, method
        assert reply.headers["allow"] == "GET, HEAD"
    head = fetch(any_server, "/status", method="HEAD")
    assert head.status == 503
    assert head.body == b""
    assert int(head.headers["content-length"]) > 100


def test_every_answer_is_uncached_and_not_sniffed(any_server: StatusServer) -> None:
    for path in ("/", "/status", "/healthz", "/nope"):
        headers = fetch(any_server, path).headers
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"


def test_the_page_is_self_contained_and_carries_no_data(any_server: StatusServer) -> None:
    reply = fetch(any_server, "/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    html = reply.body.decode()
    assert "src=" not in html.replace('rel="icon" href="data:,"', "")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert HOSTILE not in html and "pools" not in html  # data comes only through /status
    policy = reply.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy


def test_hostile_strings_come_back_as_json_strings(any_server: StatusServer) -> None:
    reply = fetch(any_server, f"/runs?collector={HOSTILE.replace('<', '%3C')}")
    runs = reply.json()["runs"]
    assert reply.headers["content-type"] == "application/json"
    assert runs[0]["collector_type"] == HOSTILE
    assert runs[0]["warnings"] == [HOSTILE_TEXT]
    assert runs[0]["metadata"]["note"] == HOSTILE_TEXT


def test_a_store_without_the_schema_is_not_ready(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    source = StoreSource(f"sqlite:///{empty}")
    try:
        with StatusServer(source, port=0) as server:
            ready = fetch(server, "/readyz")
            assert ready.status == 503
            assert "schema" in ready.json()["reason"]
            assert fetch(server, "/healthz").status == 200
            status = fetch(server, "/status")
            assert status.status == 503
            assert status.json()["error"] == "the store is unreachable"
    finally:
        source.close()


def test_an_unreachable_store_is_not_ready_but_alive() -> None:
    source = StoreSource("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    try:
        with StatusServer(source, port=0) as server:
            ready = fetch(server, "/readyz")
            assert (ready.status, ready.json()["reason"]) == (503, "the store is unreachable")
            assert fetch(server, "/healthz").status == 200
            for path in ("/status", "/alerts", "/runs"):
                reply = fetch(server, path)
                assert reply.status == 503, path
                assert reply.headers["retry-after"] == "5"
    finally:
        source.close()


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no store"):
        StoreSource(f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()


def test_the_monitor_source_follows_the_monitor(populated: StoredMonitor) -> None:
    monitor = populated.monitor
    server = monitor.serve_http(port=0)
    assert fetch(server, "/status").json()["source"] == "monitor"
    monitor.shutdown()
    assert server.closed
    with pytest.raises(ConnectionRefusedError):
        fetch(server, "/healthz")
    with pytest.raises(RuntimeError, match="shut down"):
        monitor.serve_http(port=0)
