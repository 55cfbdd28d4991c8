"""Schema migrations of the store, on a SQLite file and on a real PostgreSQL database.

From an empty database, from the previous revision with rows in it, twice in a row, at a
revision from the future, and from several threads at once; the migrated schema must be
the one ``gecko_otel.store.schema`` declares.
"""

from __future__ import annotations

import gc
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, UniqueConstraint, insert, inspect, text

from gecko_otel import AlertLevel, AlertState, ConfigError, ExecutionStatus
from gecko_otel.store import HEAD_REVISION, Store, current_revision, migrate
from gecko_otel.store.engine import create_store_engine
from gecko_otel.store.schema import (
    VERSION_TABLE,
    collection_metadata,
    execution_history,
    metadata,
    performance_metrics,
    system_alerts,
)
from support.store_helpers import StatementLog, metric_point, rows, stored_monitor

TABLES = [
    "baselines",
    "collection_metadata",
    "execution_history",
    "performance_metrics",
    "silences",
    "system_alerts",
    "thresholds",
]
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def table_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(inspect(conn).get_table_names())


def schema_of(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, nullable), primary keys, indexes and unique constraints."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        inspector = inspect(conn)
        for table in sorted(inspector.get_table_names()):
            out[table] = {
                "columns": [(c["name"], c["nullable"]) for c in inspector.get_columns(table)],
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted(
                    (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                    for ix in inspector.get_indexes(table)
                    # PostgreSQL lists the index behind a UNIQUE constraint too
                    if not ix.get("duplicates_constraint")
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                ),
            }
    return out


def declared_schema() -> dict[str, Any]:
    """What schema.py declares, in the shape of :func:`schema_of`."""
    out: dict[str, Any] = {}
    for table in metadata.tables.values():
        out[table.name] = {
            "columns": [(c.name, bool(c.nullable)) for c in table.columns],
            "primary_key": [c.name for c in table.primary_key.columns],
            "indexes": sorted(
                (ix.name, tuple(c.name for c in ix.columns), bool(ix.unique))
                for ix in table.indexes
            ),
            "unique": sorted(
                tuple(c.name for c in constraint.columns)
                for constraint in table.constraints
                if isinstance(constraint, UniqueConstraint)
            ),
        }
    return out


def differences(engine: Engine) -> list[Any]:
    """Alembic's autogenerate comparison of the database with schema.py (types included)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and name == VERSION_TABLE)
                ),
            },
        )
        return list(compare_metadata(context, metadata))


def test_migrate_creates_every_table_on_an_empty_database(engine: Engine) -> None:
    assert table_names(engine) == []
    with engine.connect() as conn:
        assert current_revision(conn) is None
    with StatementLog(engine) as log:
        assert migrate(engine) == HEAD_REVISION == "0005"
    assert table_names(engine) == sorted([*TABLES, VERSION_TABLE])
    assert versions(engine) == [HEAD_REVISION]
    with engine.connect() as conn:
        assert current_revision(conn) == "0005"
    assert log.count("CREATE TABLE") == 8  # seven tables and the version table
    assert log.count("CREATE INDEX") == 9


def test_migrate_twice_changes_nothing(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(collection_metadata).values(
                collector_type="pools", total_executions=3, updated_at=T0
            )
        )
    before = (schema_of(engine), versions(engine), rows(engine, collection_metadata))
    with StatementLog(engine) as log:
        assert migrate(engine) == HEAD_REVISION
        assert migrate(engine, "head") == HEAD_REVISION
    assert (schema_of(engine), versions(engine), rows(engine, collection_metadata)) == before
    writes = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")
    assert [s for s in log.statements if s.upper().startswith(writes)] == []


def test_migrate_from_the_previous_revision_keeps_rows(store_url: str, engine: Engine) -> None:
    assert migrate(engine, "0001") == "0001"
    assert table_names(engine) == sorted(
        ["collection_metadata", "execution_history", "system_alerts", VERSION_TABLE]
    )
    run_row = {
        "execution_id": "old-run-1",
        "collector_type": "pools",
        "status": "failure",
        "start_time": T0,
        "end_time": T0 + timedelta(seconds=2),
        "duration_seconds": 2.0,
        "duration_bucket": 35,
        "records_collected": 11,
        "error_type": "RuntimeError",
        "error_message": "boom",
        "warnings": ["w1"],
        "errors": ["RuntimeError: boom"],
        "dropped_messages": 0,
        "metadata": {"network": "solana", "page": 2},
        "trace_id": "0" * 31 + "1",
        "span_id": "0" * 15 + "2",
        "service_name": "svc-old",
        "service_instance_id": "old-1",
    }
    alert_row = {
        "id": "a" * 32,
        "collector_type": "pools",
        "rule": "consecutive_failures",
        "level": "critical",
        "state": "firing",
        "message": "3 consecutive failed runs (threshold 3)",
        "metadata": {"consecutive_failures": 3, "threshold": 3},
        "fired_at": T0,
        "last_notified_at": T0,
        "notified_level": "critical",
        "notifications": 1,
        "acknowledged_at": None,
        "resolved_at": None,
        "suppressed": False,
        "service_name": "svc-old",
        "service_instance_id": "old-1",
        "updated_at": T0,
    }
    collector_row = {
        "collector_type": "pools",
        "first_run": T0,
        "last_run": T0,
        "last_status": "failure",
        "last_success": None,
        "last_failure": T0 + timedelta(seconds=2),
        "total_executions": 1,
        "successful_executions": 0,
        "failed_executions": 1,
        "total_records": 11,
        "consecutive_failures": 1,
        "health_status": "warning",
        "health_score": 40.0,
        "service_name": "svc-old",
        "updated_at": T0,
    }
    with engine.begin() as conn:  # the 0001 tables, written with Core
        conn.execute(insert(execution_history), [run_row])
        conn.execute(insert(system_alerts), [alert_row])
        conn.execute(insert(collection_metadata), [collector_row])

    assert migrate(engine) == "0005"
    assert versions(engine) == ["0005"]
    assert table_names(engine) == sorted([*TABLES, VERSION_TABLE])
    assert [{k: v for k, v in r.items() if k != "id"} for r in rows(engine, execution_history)] == [
        run_row
    ]
    assert rows(engine, system_alerts) == [alert_row]
    assert rows(engine, collection_metadata) == [collector_row]
    assert rows(engine, performance_metrics) == []
    assert differences(engine) == []

    store = Store(engine, service_name="svc-new", owns_engine=False)
    [record] = store.history()
    assert (record.execution_id, record.status, record.start_time) == (
        "old-run-1",
        ExecutionStatus.FAILURE,
        T0,
    )
    assert record.metadata == {"network": "solana", "page": 2}
    [(stored_alert, level)] = store.alerts(active_only=False)
    assert (stored_alert.id, stored_alert.state, level) == (
        "a" * 32,
        AlertState.FIRING,
        AlertLevel.CRITICAL,
    )
    store.write([], [], [metric_point("after-upgrade", T0)])
    assert [r["name"] for r in rows(engine, performance_metrics)] == ["after-upgrade"]
    with stored_monitor(store_url) as sm:  # a Monitor opens the upgraded database as is
        assert [r.execution_id for r in sm.monitor.history()] == ["old-run-1"]
        assert sm.monitor.statistics("pools").failed_executions == 1


@pytest.mark.parametrize("path", ["empty", "stepwise"])
def test_migrated_schema_matches_the_schema_module(engine: Engine, path: str) -> None:
    if path == "stepwise":
        migrate(engine, "0001")
    migrate(engine)
    migrated = schema_of(engine)
    assert migrated.pop(VERSION_TABLE)["columns"] == [("version_num", False)]
    assert migrated == declared_schema()
    assert migrated["execution_history"]["unique"] == [("execution_id",)]
    # Alembic compares names, types, nullability, indexes and constraints: nothing differs.
    assert differences(engine) == []


def test_a_database_from_a_newer_version_is_refused(store_url: str, engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(ConfigError, match=r"revision '9999'.*Upgrade gecko-otel"):
        migrate(engine)
    with pytest.raises(ConfigError, match="Upgrade gecko-otel"):
        migrate(engine, "0001")
    with pytest.raises(ConfigError, match="Upgrade gecko-otel"), stored_monitor(store_url):
        pass  # pragma: no cover - the Monitor refuses to start
    assert versions(engine) == ["9999"]
    assert rows(engine, execution_history) == []


def _migrate_together(url: str, threads: int) -> list[Any]:
    """``migrate`` from ``threads`` threads at once, each with its own engine; their results."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def migrate_from_its_own_engine(i: int) -> None:
        own = create_store_engine(url)
        try:
            barrier.wait(timeout=10)
            results[i] = migrate(own)
        except Exception as exc:  # reported by the caller's assertion
            results[i] = exc
        finally:
            own.dispose()

    workers = [
        threading.Thread(target=migrate_from_its_own_engine, args=(i,)) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not [w for w in workers if w.is_alive()], "a migration hung"
    return results


def test_concurrent_migrations_of_an_empty_database(
    store_url: str, engine: Engine, tmp_path: Path
) -> None:
    threads = 4
    assert _migrate_together(store_url, threads) == [HEAD_REVISION] * threads
    assert versions(engine) == [HEAD_REVISION]
    assert table_names(engine) == sorted([*TABLES, VERSION_TABLE])
    assert differences(engine) == []
    if engine.dialect.name == "sqlite":
        # Races on a new SQLite file are rare per attempt: try many fresh files.
        failed = {}
        for attempt in range(40):
            results = _migrate_together(f"sqlite:///{tmp_path / f'race{attempt}.db'}", threads)
            if results != [HEAD_REVISION] * threads:
                failed[attempt] = results
        assert failed == {}


def _writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "gecko-otel-store" and t.is_alive()}


def test_a_monitor_that_refuses_a_database_leaves_no_writer_behind(
    store_url: str, engine: Engine
) -> None:
    """Monitor() raising ConfigError for a newer schema must not leave its writer thread running."""
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    before = _writer_threads()
    with pytest.raises(ConfigError, match="Upgrade gecko-otel"), stored_monitor(store_url):
        pass  # pragma: no cover - the Monitor refuses to start
    deadline = time.monotonic() + 3
    while _writer_threads() - before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert _writer_threads() - before == set()
