"""Guarantee: deleting the SQLite file while it is in use is noticed, not silent.

Connections kept writing into the deleted file: every later run was lost
while the store reported ``written_runs=1000, available=True`` and logged
nothing. Every batch now checks the file; a deleted or replaced file is
logged, made again, and the runs from then on are stored in it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import gecko_otel
import gecko_otel.store.store
from support.store_helpers import stored_monitor
from support.store_procs import sql_rows


def run(monitor: gecko_otel.Monitor, n: int) -> None:
    for _ in range(n):
        with gecko_otel.track_collection("pools", monitor=monitor) as r:
            r.add_records(1)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_file_is_made_again_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    path = tmp_path / "runs.db"
    url = f"sqlite:///{path}"
    with stored_monitor(url) as sm:
        m = sm.monitor
        run(m, 10)
        assert m.force_flush()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{path}{suffix}"):
                os.remove(f"{path}{suffix}")
        if how == "replaced":
            path.write_bytes(b"")  # an empty file where the store was
        run(m, 7)
        assert m.force_flush()
        assert m.export()["store"]["file_recreated"] == 1
        [(count,)] = sql_rows(url, "SELECT count(*) FROM execution_history")
        assert count == 7  # the runs after the deletion are in the new file
    assert any(
        r.levelno == logging.ERROR and "deleted or replaced" in r.getMessage()
        for r in caplog.records
    )


def test_an_untouched_file_is_not_checked_twice(tmp_path: Path) -> None:
    with stored_monitor(f"sqlite:///{tmp_path / 'runs.db'}") as sm:
        run(sm.monitor, 5)
        assert sm.monitor.force_flush()
        assert sm.monitor.export()["store"]["file_recreated"] == 0


def test_a_file_deleted_while_it_is_made_again_is_made_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file goes again between making its schema and taking its identity: had that
    # passed, "no file" would stay "unchanged" and every write go to the lost file.
    path = tmp_path / "runs.db"
    url = f"sqlite:///{path}"
    real_migrate = gecko_otel.store.store.migrate
    deleted: list[bool] = []

    def migrate_then_lose_it(engine: object) -> None:
        real_migrate(engine)
        if not deleted:  # the first remaking only
            deleted.append(True)
            os.remove(path)

    with stored_monitor(url) as sm:
        m = sm.monitor
        run(m, 3)
        assert m.force_flush()
        os.remove(path)
        monkeypatch.setattr(gecko_otel.store.store, "migrate", migrate_then_lose_it)
        run(m, 7)
        assert m.force_flush(30_000)
        assert deleted
        [(count,)] = sql_rows(url, "SELECT count(*) FROM execution_history")
        assert count == 7  # the runs after the deletions are in the file made last
