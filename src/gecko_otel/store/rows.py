"""Rows: cleaning values for storage, and converting rows to and from records.

The two renderings of a run (SQLAlchemy parameters for PostgreSQL, one
multi-row INSERT text for SQLite) and the conversions back from rows are kept
here, so they stay identical.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from gecko_otel._values.alerts import Alert, AlertState
from gecko_otel._values.health import AlertLevel
from gecko_otel._values.records import (
    ExecutionRecord,
    ExecutionStatus,
    FinishedRun,
    make_record,
    utc_ns,
)
from gecko_otel.store.export import EXPORT_COLUMNS
from gecko_otel.store.schema import (
    collection_metadata,
    execution_history,
    system_alerts,
)

logger = logging.getLogger("gecko_otel.store")

CLEANUP_BATCH: Final = 5000
#: Rows fetched per round trip by streaming exports.
STREAM_CHUNK: Final = 1000

_ERROR_STATUSES: Final = (ExecutionStatus.FAILURE.value, ExecutionStatus.TIMEOUT.value)
_OK_STATUSES: Final = (ExecutionStatus.SUCCESS.value, ExecutionStatus.PARTIAL.value)
_NOT_STARTED: Final = (ExecutionStatus.MISSED.value, ExecutionStatus.SKIPPED.value)
_H = execution_history.c
#: execution_history's columns in the order of the SQLite insert (all but the key).
_RUN_COLUMNS: Final = tuple(c.name for c in execution_history.c if c.name != "id")
#: Bound values per SQLite statement (32,766 since SQLite 3.32, 999 before).
_SQLITE_VARIABLES: Final = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
#: Runs per SQLite INSERT (500 x 18 values): one statement is one sqlite3_step.
_SQLITE_RUNS_PER_INSERT: Final = min(500, _SQLITE_VARIABLES // len(_RUN_COLUMNS))
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_A = system_alerts.c
_M = collection_metadata.c


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def clean_text(value: str | None, limit: int | None = None) -> str | None:
    """Text a database accepts: NUL characters replaced (PostgreSQL refuses them), cut."""
    if value is None:
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates, e.g. from os.fsdecode()
            value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit is not None and len(value) > limit else value


def clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or Infinity; PostgreSQL refuses them
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if any(isinstance(v, float) and not math.isfinite(v) for v in value):
            # One non-finite float becomes text: so do the others, or the
            # list would come back with mixed types (not an attribute value).
            return [repr(v) if isinstance(v, float) else clean_json(v) for v in value]
        return [clean_json(v) for v in value]
    return value


@dataclass(slots=True)
class CollectorUpdate:
    """What one batch adds to a collector's ``collection_metadata`` row."""

    collector_type: str
    first_run: datetime | None = None
    last_run: datetime | None = None
    last_status: str | None = None
    last_success: datetime | None = None
    last_failure: datetime | None = None
    total_executions: int = 0
    successful_executions: int = 0
    failed_executions: int = 0
    total_records: int = 0

    def add(self, run: FinishedRun) -> None:
        start = utc_ns(run.start_ns)
        ended = utc_ns(run.end_ns) if run.end_ns is not None else start
        status = run.status
        self.total_executions += 1
        self.total_records += run.records_collected
        if self.first_run is None or start < self.first_run:
            self.first_run = start
        if self.last_run is None or start >= self.last_run:
            self.last_run = start
            self.last_status = status.value
        if status.is_successful:
            self.successful_executions += 1
            if self.last_success is None or ended > self.last_success:
                self.last_success = ended
        elif status.is_error:
            self.failed_executions += 1
            if self.last_failure is None or ended > self.last_failure:
                self.last_failure = ended


@dataclass(frozen=True, slots=True)
class CollectorRow:
    """A collector's ``collection_metadata`` row, as read back."""

    collector_type: str
    first_run: datetime | None
    last_run: datetime | None
    last_status: str | None
    last_success: datetime | None
    last_failure: datetime | None
    total_executions: int
    successful_executions: int
    failed_executions: int
    total_records: int
    consecutive_failures: int
    health_status: str | None
    health_score: float | None
    service_name: str | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in ((f, getattr(self, f)) for f in self.__slots__)
        }


@dataclass(frozen=True, slots=True)
class WindowBucket:
    """Runs of one collector in one health-window bucket (for restoring health)."""

    collector_type: str
    bucket: int
    total: int
    ok: int
    duration_sum: float
    duration_count: int
    records: int


@functools.lru_cache(maxsize=8)
def sqlite_insert_runs(rows: int) -> str:
    """One INSERT of ``rows`` runs; a run already stored is skipped."""
    group = f"({', '.join('?' * len(_RUN_COLUMNS))})"
    return (
        f"INSERT INTO execution_history ({', '.join(_RUN_COLUMNS)}) "
        f"VALUES {', '.join([group] * rows)} ON CONFLICT (execution_id) DO NOTHING"
    )


def sqlite_time(ns: int) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for ``utc_ns(ns)`` (naive UTC, microseconds)."""
    return (_NAIVE_EPOCH + timedelta(microseconds=ns // 1000)).isoformat(" ", "microseconds")


def json_text(value: Any, empty: str) -> str:
    """What SQLAlchemy's JSON type stores for ``clean_json(value)``."""
    if not value:
        return empty
    text = json.dumps(value)
    # json.dumps escapes NUL as \u0000 and writes NaN/Infinity bare: clean
    # only when there is one.
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        return json.dumps(clean_json(value))
    return text


def record_from_row(row: Any) -> ExecutionRecord:
    m = row._mapping
    return make_record(
        m["collector_type"],
        m["execution_id"],
        ExecutionStatus(m["status"]),
        m["start_time"],
        m["end_time"],
        m["duration_seconds"],
        int(m["records_collected"]),
        tuple(m["errors"] or ()),
        tuple(m["warnings"] or ()),
        MappingProxyType(
            {k: tuple(v) if isinstance(v, list) else v for k, v in (m["metadata"] or {}).items()}
        ),
        m["error_type"],
        m["error_message"],
        m["trace_id"],
        m["span_id"],
        int(m["dropped_messages"] or 0),
    )


def alert_from_row(row: Any) -> tuple[Alert, AlertLevel | None]:
    m = row._mapping
    notified = m["notified_level"]
    return (
        Alert(
            id=m["id"],
            level=AlertLevel(m["level"]),
            collector_type=m["collector_type"],
            rule=m["rule"],
            message=m["message"],
            timestamp=m["fired_at"],
            metadata=dict(m["metadata"] or {}),
            state=AlertState(m["state"]),
            fired_at=m["fired_at"],
            last_notified_at=m["last_notified_at"],
            acknowledged_at=m["acknowledged_at"],
            resolved_at=m["resolved_at"],
            suppressed=bool(m["suppressed"]),
            notifications=int(m["notifications"] or 0),
        ),
        AlertLevel(notified) if notified else None,
    )


def export_row(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in EXPORT_COLUMNS:
        value = m[name]
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
