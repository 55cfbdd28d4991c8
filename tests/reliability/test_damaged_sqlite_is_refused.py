"""Guarantee: a damaged SQLite file is refused at start, never written into.

A corrupt file used to be written to as if healthy. Now ``setup()`` and
``Monitor(database=...)`` run ``PRAGMA quick_check`` and raise a
``ConfigError`` that names the file and says what to do; nothing is left
running.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import gecko_otel
from gecko_otel import ConfigError
from support.store_helpers import stored_monitor


def make_store(path: Path, runs: int = 300) -> None:
    with stored_monitor(f"sqlite:///{path}") as sm:
        for i in range(runs):
            with gecko_otel.track_collection(f"c{i % 7}", monitor=sm.monitor) as run:
                run.set_metadata("payload", "x" * 200)
        assert sm.monitor.force_flush()


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    for offset in range(2 * page, len(data) - page, 3 * page):  # keep the header page
        data[offset + 100 : offset + 900] = b"\xde\xad\xbe\xef" * 200
    path.write_bytes(bytes(data))


def monitor_on(path: Path) -> gecko_otel.Monitor:
    return gecko_otel.Monitor(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(),
        database=f"sqlite:///{path}",
        watchdog=False,
    )


def gecko_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("gecko-otel")}


def test_a_corrupt_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    make_store(path)
    damage(path)
    before = gecko_threads()
    with pytest.raises(ConfigError, match=r"store\.db is damaged.*move the file aside"):
        monitor_on(path)
    assert gecko_threads() <= before  # nothing left running


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 500)
    with pytest.raises(ConfigError, match="damaged"):
        monitor_on(path)
    with pytest.raises(ConfigError, match="damaged"):
        gecko_otel.setup(
            tracer_provider=TracerProvider(),
            meter_provider=MeterProvider(),
            database_url=f"sqlite:///{path}",
        )
    assert gecko_otel.get_monitor() is None


def test_a_sound_file_is_used(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    make_store(path, runs=20)
    monitor = monitor_on(path)
    try:
        assert len(monitor.history()) == 20
    finally:
        monitor.shutdown()
