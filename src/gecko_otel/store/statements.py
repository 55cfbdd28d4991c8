"""The store's write statements, built once per Store and dialect.

Runs are inserted once (a run already stored is skipped); alerts are upserted
by id without undoing a change made elsewhere; each collector's
``collection_metadata`` row is upserted with totals that add to what is there,
then its failure streak is recomputed from the stored runs, so several
processes can share it without a lost update.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)

from gecko_otel._values.alerts import AlertState
from gecko_otel.store.rows import _A, _ERROR_STATUSES, _H, _M, _OK_STATUSES
from gecko_otel.store.schema import (
    UTCDateTime,
    collection_metadata,
    execution_history,
    system_alerts,
)

#: The statements `build_statement` makes.
WRITE_STATEMENTS: Final = ("runs", "streak", "health", "alerts", "collectors")


def build_statement(name: str, dialect: Any) -> Any:
    """The write statement ``name`` (runs, streak, health, alerts, collectors) for ``dialect``."""
    if name == "runs":
        return dialect.insert(execution_history).on_conflict_do_nothing(
            index_elements=["execution_id"]
        )
    if name == "streak":
        return streak_update()
    if name == "health":
        return (
            update(collection_metadata)
            .where(_M.collector_type == bindparam("c"))
            .values(health_status=bindparam("s"), health_score=bindparam("h"))
        )
    if name == "alerts":
        return alert_upsert(dialect)
    return collector_upsert(dialect)


def alert_upsert(dialect: Any) -> Any:
    """The ``system_alerts`` upsert; a change made elsewhere is not undone (see below)."""
    insert = dialect.insert(system_alerts)
    new = insert.excluded
    set_: dict[str, Any] = {c.name: new[c.name] for c in system_alerts.c if c.name != "id"}
    # An acknowledgement or resolution made elsewhere (another process,
    # the command line) is not undone by the owner's next snapshot: a
    # resolved row stays resolved, an acknowledged one stays acknowledged
    # unless the alert escalates. The owner picks the change up itself.
    resolved = _A.state == AlertState.RESOLVED.value
    keep_ack = and_(
        _A.state == AlertState.ACKNOWLEDGED.value,
        new.state == AlertState.FIRING.value,
        new.level == _A.level,
    )
    set_["state"] = case((resolved, _A.state), (keep_ack, _A.state), else_=new.state)
    set_["acknowledged_at"] = case(
        (resolved, _A.acknowledged_at),
        (keep_ack, _A.acknowledged_at),
        else_=new.acknowledged_at,
    )
    set_["resolved_at"] = case((resolved, _A.resolved_at), else_=new.resolved_at)
    return insert.on_conflict_do_update(index_elements=["id"], set_=set_)


def collector_upsert(dialect: Any) -> Any:
    """The ``collection_metadata`` upsert, executed with one parameter set per collector.

    Totals add to what is stored; ``consecutive_failures`` is left to
    `streak_update`, run after it in the same transaction.
    """
    insert = dialect.insert(collection_metadata)
    new = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["collector_type"],
        set_={
            "first_run": earliest(_M.first_run, new.first_run),
            "last_run": latest(_M.last_run, new.last_run),
            "last_status": case(
                (_M.last_run.is_(None), new.last_status),
                (new.last_run >= _M.last_run, new.last_status),
                else_=_M.last_status,
            ),
            "last_success": latest(_M.last_success, new.last_success),
            "last_failure": latest(_M.last_failure, new.last_failure),
            "total_executions": _M.total_executions + new.total_executions,
            "successful_executions": _M.successful_executions + new.successful_executions,
            "failed_executions": _M.failed_executions + new.failed_executions,
            "total_records": _M.total_records + new.total_records,
            "service_name": new.service_name,
            "updated_at": new.updated_at,
        },
    )


def streak_update() -> Any:
    """Set ``consecutive_failures`` of collector ``:c`` from its stored runs."""
    ok = execution_history.alias("ok")
    last_success = (
        select(ok.c.start_time)
        .where(
            ok.c.collector_type == bindparam("c"),
            or_(*(ok.c.status == v for v in _OK_STATUSES)),
        )
        .order_by(ok.c.start_time.desc())
        .limit(1)
        .scalar_subquery()
    )
    failures = (
        select(func.count())
        .select_from(execution_history)
        .where(
            _H.collector_type == bindparam("c"),
            # No IN (...): its expanding parameters cannot be used with executemany.
            or_(*(_H.status == v for v in _ERROR_STATUSES)),
            _H.start_time > func.coalesce(last_success, literal(_EPOCH_UTC, UTCDateTime())),
        )
        .scalar_subquery()
    )
    return (
        update(collection_metadata)
        .where(_M.collector_type == bindparam("c"))
        .values(consecutive_failures=failures)
    )


_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def earliest(current: Any, new: Any) -> ColumnElement[Any]:
    return case(
        (current.is_(None), new), (new.is_(None), current), (new < current, new), else_=current
    )


def latest(current: Any, new: Any) -> ColumnElement[Any]:
    return case(
        (current.is_(None), new), (new.is_(None), current), (new > current, new), else_=current
    )


def replacing_insert(engine: Any, table: Any, keys: list[str]) -> Any:
    """An INSERT of ``table`` rows that replaces the row with the same ``keys``.

    One statement (``ON CONFLICT DO UPDATE``), so processes writing the same
    row at once do not collide as a DELETE then INSERT would.
    """
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415 - per dialect

    dialect: Any = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    rest = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=rest)
