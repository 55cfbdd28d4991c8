"""Baselines stored in the database: kept across restarts, shared between processes.

Each Monitor on the store writes the baselines that learned since its last
sync (every ``watchdog_interval``, on the writer thread) and reads those
another process wrote since then, meeting them halfway
(`gecko_otel._health.baseline.Baseline.adopt`): processes running the same
collector converge on one baseline. At start a Monitor takes the stored
baseline of each collector, so a restart or a new replica needs no warm-up.

One row per collector; the last writer's values are the row (one upsert,
so processes writing it at once do not collide). Rows that do
not read as numbers (edited by hand) are skipped.

Threading: every function takes its own connection from the engine's pool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, RowMapping, select

from gecko_otel._values.health import BaselineState
from gecko_otel.store.engine import write_transaction
from gecko_otel.store.schema import baselines
from gecko_otel.store.statements import replacing_insert

_B = baselines.c


def write_baselines(
    engine: Engine, states: Mapping[str, BaselineState], *, by: str, now: datetime
) -> int:
    """Store ``states`` (collector to baseline, times as unix seconds); how many rows."""
    if not states:
        return 0
    rows = [_row(name, state, by, now) for name, state in states.items()]
    with write_transaction(engine) as conn:
        conn.execute(replacing_insert(engine, baselines, ["collector_type"]), rows)
    return len(rows)


def read_baselines(engine: Engine) -> dict[str, BaselineState]:
    """Every stored baseline."""
    return {name: state for name, (state, _at) in _read(engine, select(baselines)).items()}


def read_newer_baselines(
    engine: Engine, seen: dict[str, datetime], *, since: datetime, not_by: str
) -> dict[str, BaselineState]:
    """Baselines another than ``not_by`` wrote after ``since``, each once.

    ``seen`` (collector to the last row's time taken) is updated, so a row
    read again (``since`` overlaps the last read, since a write is stamped
    before it commits) is not taken twice.
    """
    query = select(baselines).where(_B.updated_at > since, _B.updated_by != not_by)
    out = {}
    for name, (state, at) in _read(engine, query).items():
        if name not in seen or at > seen[name]:
            seen[name] = at
            out[name] = state
    return out


def _read(engine: Engine, query: Any) -> dict[str, tuple[BaselineState, datetime]]:
    out = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            m = row._mapping
            state = _state(m)
            if state is not None:
                out[m["collector_type"]] = (state, m["updated_at"])
    return out


def _row(name: str, state: BaselineState, by: str, now: datetime) -> dict[str, Any]:
    at = state.last_records_at
    return {
        "collector_type": name,
        "runs": state.runs,
        "records_center": state.records_center,
        "records_spread": state.records_spread,
        "zero_share": state.zero_share,
        "duration_runs": state.duration_runs,
        "duration_center": state.duration_center,
        "duration_spread": state.duration_spread,
        "last_records_at": None if at is None else datetime.fromtimestamp(at, timezone.utc),
        "updated_by": by,
        "updated_at": now,
    }


def _state(m: Mapping[str, Any] | RowMapping) -> BaselineState | None:
    numbers = [
        m["records_center"],
        m["records_spread"],
        m["zero_share"],
        m["duration_center"],
        m["duration_spread"],
    ]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
        return None
    if not (isinstance(m["runs"], int) and isinstance(m["duration_runs"], int)):
        return None
    at = m["last_records_at"]
    # Within what a collector can be (e^40 records, 1e-13 s to e^25 s), so a
    # row edited by hand cannot overflow the arithmetic that reads it.
    return BaselineState(
        runs=max(0, m["runs"]),
        records_center=_within(m["records_center"], 0.0, 40.0),
        records_spread=_within(m["records_spread"], 0.0, 5.0),
        zero_share=_within(m["zero_share"], 0.0, 1.0),
        duration_runs=max(0, m["duration_runs"]),
        duration_center=_within(m["duration_center"], -30.0, 25.0),
        duration_spread=_within(m["duration_spread"], 0.0, 5.0),
        last_records_at=at.timestamp() if at is not None else None,
    )


def _within(value: float, low: float, high: float) -> float:
    return min(high, max(low, float(value)))
