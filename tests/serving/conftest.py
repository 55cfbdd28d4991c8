"""Status servers over real monitors (that ran real collections) and real stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gecko_otel import Monitor
from gecko_otel.serving import StatusServer, StoreSource
from support.status import populate
from support.store_helpers import StoredMonitor, stored_monitor


@pytest.fixture
def populated(store_url: str) -> Iterator[StoredMonitor]:
    """A Monitor on the store (SQLite, then PostgreSQL) that ran real collections, all stored."""
    with stored_monitor(store_url) as stored:
        populate(stored.monitor)
        assert stored.monitor.force_flush()
        yield stored


@pytest.fixture
def store_server(populated: StoredMonitor, store_url: str) -> Iterator[StatusServer]:
    """A status server reading the populated store, as ``gecko-otel serve`` does."""
    source = StoreSource(store_url)
    try:
        with StatusServer(source, port=0) as server:
            yield server
    finally:
        source.close()


@pytest.fixture
def monitor_server() -> Iterator[tuple[Monitor, StatusServer]]:
    """A memory-only Monitor that ran real collections, serving itself."""
    with stored_monitor(None) as stored:
        populate(stored.monitor)
        yield stored.monitor, stored.monitor.serve_http(port=0)


@pytest.fixture(params=["store", "monitor"])
def any_server(request: pytest.FixtureRequest) -> Iterator[StatusServer]:
    """The same routes from both sources: a SQLite store and a Monitor."""
    if request.param == "monitor":
        _monitor, server = request.getfixturevalue("monitor_server")
        yield server
        return
    source = StoreSource(request.getfixturevalue("sqlite_populated"))
    try:
        with StatusServer(source, port=0) as server:
            yield server
    finally:
        source.close()


@pytest.fixture
def sqlite_populated(tmp_path: Path) -> str:
    """The URL of a SQLite store that a Monitor populated (and shut down)."""
    url = f"sqlite:///{tmp_path / 'gecko_otel.db'}"
    with stored_monitor(url) as stored:
        populate(stored.monitor)
        assert stored.monitor.force_flush()
    return url
