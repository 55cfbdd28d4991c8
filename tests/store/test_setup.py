"""setup() and start-up with a store: refusals before providers, a database that comes back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import create_engine, text

import gecko_otel
from gecko_otel.store.engine import migrate
from support.postgres import PostgresServer
from support.runs import run
from support.store_helpers import setup_in_a_child, stored_monitor


def test_a_newer_schema_is_refused_before_setup_creates_providers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    engine = create_engine(url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE gecko_otel_schema_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    out = setup_in_a_child(url)
    assert "newer version" in out["error"]
    assert out["tracer"] == "ProxyTracerProvider"
    assert out["meter"] == "_ProxyMeterProvider"


def test_an_engine_wins_over_a_bad_environment_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GECKO_OTEL_DATABASE_URL", "mysql://not/used")
    engine = create_engine(f"sqlite:///{tmp_path / 'given.db'}")
    tp, mp = TracerProvider(), MeterProvider()
    monitor = gecko_otel.setup(tracer_provider=tp, meter_provider=mp, database_url=engine)
    try:
        run("given", records=2)
        assert monitor.force_flush()
        assert [r.records_collected for r in monitor.history("given")] == [2]
    finally:
        monitor.shutdown()
        tp.shutdown()
        mp.shutdown()
        engine.dispose()


@pytest.mark.integration
@pytest.mark.slow  # a private PostgreSQL server, stopped and started
def test_a_database_down_at_start_is_read_again_once_back(
    private_postgres: PostgresServer,
) -> None:
    """Nothing written since start: the writer's periodic check finds the database back."""
    url = private_postgres.url()
    private_postgres.stop()
    with stored_monitor(url, watchdog_interval=0.1) as sm:
        m = sm.monitor
        assert m._store.writer is not None
        assert m._store.writer.available is False
        private_postgres.start()
        deadline = time.monotonic() + 20
        while not m._store.writer.available:
            assert time.monotonic() < deadline, "the store was never found again"
            time.sleep(0.05)
        other = create_engine(url)
        try:
            migrate(other)
        finally:
            other.dispose()
        assert m.history() == []  # read from the store, not refused
        assert m.export()["store"]["available"] is True
