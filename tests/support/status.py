"""Helpers of the status server tests: a plain HTTP client, real runs, hostile names."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

import gecko_otel
from gecko_otel import Monitor
from gecko_otel.serving import StatusServer

#: A collector name and texts that would run script if any of them were parsed as markup.
HOSTILE = "<script>alert(1)</script>"
HOSTILE_TEXT = "</script><img src=x onerror=\"document.title='pwned'\">"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(
    server: StatusServer, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> Reply:
    """One request to ``server`` on a fresh connection."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


def run(monitor: Monitor, name: str, *, fail: bool = False, records: int = 3) -> None:
    """One real collection run of ``name`` on ``monitor``."""
    try:
        with gecko_otel.track_collection(name, monitor=monitor) as current:
            current.add_records(records)
            if fail:
                raise RuntimeError("the API is down")
    except RuntimeError:
        pass


def populate(monitor: Monitor) -> None:
    """``pools`` healthy (3 runs), ``trades`` critical (3 failures, an alert), a hostile one."""
    for _ in range(3):
        run(monitor, "pools")
    for _ in range(3):
        run(monitor, "trades", fail=True)
    with gecko_otel.track_collection(
        HOSTILE, monitor=monitor, metadata={"note": HOSTILE_TEXT}
    ) as current:
        current.warn(HOSTILE_TEXT)
