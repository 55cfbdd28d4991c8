"""Thresholds stored in the database: set, unset, list, and the set monitors apply.

``gecko-otel thresholds`` writes here; every Monitor sharing the store reads
the whole set at start and on each alert sync (every ``watchdog_interval``)
and puts it in force over its configured thresholds, re-evaluating the
collectors whose thresholds changed (see `gecko_otel._health.thresholds`
for the order of precedence).

One row per (collector, threshold); ``collector_type`` '' holds the values
for every collector. Values are validated as `CollectorThresholds`
validates them before they are written, and again when read: a row edited
by hand into something invalid is skipped with a warning, never applied.

Threading: every function takes its own connection from the engine's pool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, delete, select

from gecko_otel._checks import check_collector_type
from gecko_otel._health.thresholds import Stored, check_values
from gecko_otel.errors import ConfigError
from gecko_otel.store.engine import write_transaction
from gecko_otel.store.rows import clean_text
from gecko_otel.store.schema import NAME_LENGTH, thresholds
from gecko_otel.store.statements import replacing_insert

logger = logging.getLogger("gecko_otel")

_T = thresholds.c
#: The ``collector_type`` of values that apply to every collector.
EVERY: str = ""
#: Invalid rows already logged: each is logged once per process, not every sync.
_WARNED: set[tuple[str, str | None, str, float]] = set()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredThreshold:
    """One stored threshold.

    Attributes:
        collector_type: The collector it applies to, or None for every collector.
        name: The threshold (a `CollectorThresholds` field).
        value: Its value; durations in seconds.
        updated_by: Who set it (``user@host``), when known.
        updated_at: When it was set.
    """

    collector_type: str | None
    name: str
    value: float
    updated_by: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the time in ISO 8601."""
        return {
            "collector_type": self.collector_type,
            "name": self.name,
            "value": self.value,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at.isoformat(),
        }


def _scope(collector_type: str | None) -> str:
    return EVERY if collector_type is None else check_collector_type(collector_type)


def set_thresholds(
    engine: Engine,
    collector_type: str | None,
    values: Mapping[str, Any],
    *,
    now: datetime,
    updated_by: str | None = None,
) -> list[StoredThreshold]:
    """Store ``values`` for ``collector_type`` (None: every collector); the rows written.

    Raises:
        ConfigError: An invalid collector type, threshold name or value.
    """
    scope = _scope(collector_type)
    checked = check_values(values)
    if not checked:
        raise ConfigError("give at least one threshold to set")
    by = clean_text(updated_by, NAME_LENGTH) if updated_by else None
    rows = [
        {"collector_type": scope, "name": n, "value": v, "updated_by": by, "updated_at": now}
        for n, v in checked.items()
    ]
    with write_transaction(engine) as conn:
        conn.execute(replacing_insert(engine, thresholds, ["collector_type", "name"]), rows)
    return [_stored(row) for row in rows]


def unset_thresholds(
    engine: Engine, collector_type: str | None, names: Iterable[str] | None = None
) -> int:
    """Remove stored values of ``collector_type`` (None: every collector's); how many.

    ``names`` None removes all of that scope's values.
    """
    scope = _scope(collector_type)
    query = delete(thresholds).where(_T.collector_type == scope)
    if names is not None:
        query = query.where(_T.name.in_(list(names)))
    with write_transaction(engine) as conn:
        return int(conn.execute(query).rowcount or 0)


def list_thresholds(engine: Engine, collector_type: str | None = None) -> list[StoredThreshold]:
    """Stored thresholds, all of them or those that apply to ``collector_type``.

    Sorted with the values for every collector first, then by collector and name.
    """
    query = select(thresholds).order_by(_T.collector_type, _T.name)
    if collector_type is not None:
        query = query.where(_T.collector_type.in_([EVERY, collector_type]))
    with engine.connect() as conn:
        return [_stored(row._mapping) for row in conn.execute(query)]


def overrides(engine: Engine) -> Stored:
    """The stored set as monitors apply it: valid rows only, by collector (None: every)."""
    out: dict[str | None, dict[str, float]] = {}
    for row in list_thresholds(engine):
        try:
            check_values({row.name: row.value})
        except ConfigError as exc:
            key = (engine.url.render_as_string(), row.collector_type, row.name, row.value)
            if key in _WARNED:
                continue
            _WARNED.add(key)
            logger.warning(
                "gecko_otel: ignoring the stored threshold %s=%r for %s: %s",
                row.name,
                row.value,
                row.collector_type or "every collector",
                exc,
            )
            continue
        out.setdefault(row.collector_type, {})[row.name] = row.value
    return out


def _stored(row: Mapping[str, Any] | RowMapping) -> StoredThreshold:
    return StoredThreshold(
        collector_type=row["collector_type"] or None,
        name=row["name"],
        value=float(row["value"]),
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )
