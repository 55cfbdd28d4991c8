"""Silences stored in the database: add, list, end.

A silence holds back the notifications of one collector's alerts (one
rule's, or all) until it expires or is ended. It lives in the ``silences``
table so it survives restarts, and every Monitor sharing the store applies
the active ones on its alert sync (every ``watchdog_interval``), through the
same mechanism as ``Monitor.suppress``: alerts still fire and are listed,
handlers hear of them once the silence is over.

Ending a silence sets ``ended_at``; rows are never deleted here, so
``gecko-otel silences --all`` shows the history.

Threading: every function takes its own connection from the engine's pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from gecko_otel._checks import check_collector_type
from gecko_otel.errors import ConfigError
from gecko_otel.store.engine import write_transaction
from gecko_otel.store.rows import clean_text
from gecko_otel.store.schema import NAME_LENGTH, silences

_S = silences.c


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """One stored silence.

    Attributes:
        id: Its number in the store.
        collector_type: The collector whose alerts it silences.
        rule: The one rule it silences, or None for every rule.
        starts_at: When it was set.
        ends_at: When it expires.
        comment: Why, as the operator wrote it.
        created_by: Who set it (``user@host``), when known.
        created_at: When it was written.
        ended_at: When it was ended by hand (unsilence), else None.
    """

    id: int
    collector_type: str
    rule: str | None
    starts_at: datetime
    ends_at: datetime
    comment: str | None
    created_by: str | None
    created_at: datetime
    ended_at: datetime | None

    def active(self, now: datetime) -> bool:
        """Whether it silences alerts at ``now``."""
        return self.ended_at is None and now < self.ends_at

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """JSON-ready: times in ISO 8601, and whether it is ``active`` at ``now``."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "id": self.id,
            "collector_type": self.collector_type,
            "rule": self.rule,
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "ended_at": iso(self.ended_at),
            "active": self.active(now),
        }


def _silence(row: Any) -> Silence:
    m = row._mapping
    return Silence(
        id=int(m["id"]),
        collector_type=m["collector_type"],
        rule=m["rule"],
        starts_at=m["starts_at"],
        ends_at=m["ends_at"],
        comment=m["comment"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        ended_at=m["ended_at"],
    )


def add_silence(
    engine: Engine,
    collector_type: str,
    *,
    length: timedelta,
    now: datetime,
    rule: str | None = None,
    comment: str | None = None,
    created_by: str | None = None,
) -> Silence:
    """Store a silence of ``collector_type`` (one ``rule``, or all) from ``now`` for ``length``.

    A collector not seen yet is fine: the silence waits for its alerts.

    Raises:
        ConfigError: An invalid collector type or rule, or a non-positive length.
    """
    check_collector_type(collector_type)
    if rule is not None and (not rule.strip() or len(rule) > NAME_LENGTH):
        raise ConfigError(
            f"rule must be a rule name (such as consecutive_failures), got {rule[:80]!r}"
        )
    if length <= timedelta(0):
        raise ConfigError(f"a silence must last more than 0 s, got {length}")
    values: dict[str, Any] = {
        "collector_type": collector_type,
        "rule": rule,
        "starts_at": now,
        "ends_at": now + length,
        "comment": comment,
        "created_by": clean_text(created_by, NAME_LENGTH) if created_by else None,
        "created_at": now,
        "ended_at": None,
    }
    with write_transaction(engine) as conn:
        key = conn.execute(insert(silences).values(**values)).inserted_primary_key
    if key is None:  # never: an INSERT of one row has its key
        raise RuntimeError("the silence was stored without an id")
    return Silence(id=int(key[0]), **values)


def list_silences(
    engine: Engine, now: datetime, *, include_inactive: bool = False
) -> list[Silence]:
    """Active silences (all of them with ``include_inactive``), newest first."""
    query = select(silences).order_by(_S.id.desc())
    if not include_inactive:
        query = query.where(_S.ended_at.is_(None), _S.ends_at > now)
    with engine.connect() as conn:
        return [_silence(row) for row in conn.execute(query)]


def get_silence(engine: Engine, silence_id: int) -> Silence | None:
    """One silence by id, active or not; None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(select(silences).where(_S.id == silence_id)).first()
    return _silence(row) if row is not None else None


def end_silences(
    engine: Engine,
    now: datetime,
    *,
    silence_id: int | None = None,
    collector_type: str | None = None,
    rule: str | None = None,
) -> list[Silence]:
    """End active silences now: one by id, or a collector's (one rule's, or all); the ended ones.

    Monitors sharing the store stop applying them on their next alert sync.
    """
    if (silence_id is None) == (collector_type is None):
        raise ValueError("give silence_id or collector_type")
    wanted = [_S.ended_at.is_(None), _S.ends_at > now]
    if silence_id is not None:
        wanted.append(_S.id == silence_id)
    else:
        wanted.append(_S.collector_type == collector_type)
        if rule is not None:
            wanted.append(_S.rule == rule)
    with write_transaction(engine) as conn:
        ids = list(conn.execute(select(_S.id).where(*wanted)).scalars())
        if not ids:
            return []
        conn.execute(update(silences).where(_S.id.in_(ids), *wanted).values(ended_at=now))
        rows = conn.execute(select(silences).where(_S.id.in_(ids)).order_by(_S.id))
        return [_silence(row) for row in rows]
