"""The bearer token: everything but the probes needs it; a malformed one is refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event

from gecko_otel import ConfigError
from gecko_otel.serving import MonitorSource, StatusServer, StoreSource
from support.status import fetch, run
from support.store_helpers import stored_monitor

TOKEN = "s3cr3t-t0ken"


@pytest.fixture
def guarded_server():
    with stored_monitor(None) as stored:
        run(stored.monitor, "pools")
        yield stored.monitor.serve_http(port=0, token=TOKEN)


@pytest.mark.parametrize("path", ["/", "/status", "/alerts", "/runs?collector=pools"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
def test_everything_but_the_probes_needs_the_token(
    guarded_server: StatusServer, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply = fetch(guarded_server, path, headers=headers)
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="gecko-otel"'
    assert b"pools" not in reply.body


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_token_opens_every_path(guarded_server: StatusServer, scheme: str) -> None:
    for path in ("/", "/readyz", "/status", "/alerts", "/runs?collector=pools"):
        reply = fetch(guarded_server, path, headers={"Authorization": f"{scheme} {TOKEN}"})
        assert reply.status == 200, path
    runs = fetch(guarded_server, "/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert runs.json()["runs"][0]["collector_type"] == "pools"


def test_the_probes_need_no_token(guarded_server: StatusServer) -> None:
    # A kubelet's or load balancer's probe carries no secret.
    assert fetch(guarded_server, "/healthz").status == 200
    ready = fetch(guarded_server, "/readyz")
    assert (ready.status, ready.json()["ready"]) == (200, True)


def test_readiness_says_why_not_only_to_the_token(tmp_path: Path) -> None:
    # The reason may name the database or its error.
    empty = tmp_path / "empty.db"
    empty.touch()
    source = StoreSource(f"sqlite:///{empty}")
    try:
        with StatusServer(source, port=0, token=TOKEN) as server:
            anonymous = fetch(server, "/readyz")
            assert anonymous.status == 503
            assert anonymous.json()["reason"] is None
            assert anonymous.json() == {"schema_version": 1, "ready": False, "reason": None}
            told = fetch(server, "/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
            assert told.status == 503
            assert "schema" in told.json()["reason"]
    finally:
        source.close()


def test_readiness_without_the_token_costs_the_database_little(tmp_path: Path) -> None:
    # Anyone who reaches the port may ask: answers without the token are reused for a
    # second, so a flood of them does not take a database connection each.
    empty = tmp_path / "empty.db"
    empty.touch()
    source = StoreSource(f"sqlite:///{empty}")
    checkouts: list[object] = []
    event.listen(source._store.engine, "checkout", lambda *_: checkouts.append(1))
    try:
        with StatusServer(source, port=0, token=TOKEN) as server:
            for _ in range(20):
                assert fetch(server, "/readyz").status == 503
            assert len(checkouts) <= 2  # a second may have turned over once
            checkouts.clear()
            for _ in range(3):  # the token's holders get a fresh answer each time
                fetch(server, "/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
            assert len(checkouts) == 3
    finally:
        source.close()


def test_the_page_without_the_token_is_the_login_form_without_data(
    guarded_server: StatusServer,
) -> None:
    reply = fetch(guarded_server, "/")
    assert reply.status == 401
    assert reply.headers["content-type"].startswith("text/html")
    assert b'id="login"' in reply.body


@pytest.mark.parametrize("token", ["", "has space", "tab\tinside", "caf\u00e9", "line\nbreak"])
def test_a_malformed_token_is_a_config_error(token: str) -> None:
    with stored_monitor(None) as stored, pytest.raises(ConfigError, match="token"):
        StatusServer(MonitorSource(stored.monitor), port=0, token=token)


def test_it_listens_on_loopback_by_default() -> None:
    with stored_monitor(None) as stored:
        server = stored.monitor.serve_http(port=0)
        assert server.host == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.port}/"


def test_a_port_in_use_is_a_config_error() -> None:
    with stored_monitor(None) as stored:
        first = stored.monitor.serve_http(port=0)
        with pytest.raises(ConfigError, match="cannot listen"):
            stored.monitor.serve_http(port=first.port)
