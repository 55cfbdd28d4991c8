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
from collections.abc import Iterator, Mapping
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


def _power_of_two_at_most(n: int) -> int:
    return 1 << (n.bit_length() - 1)


#: Runs per SQLite INSERT (512 x 18 values): one statement is one sqlite3_step.
_SQLITE_RUNS_PER_INSERT: Final = _power_of_two_at_most(
    min(512, _SQLITE_VARIABLES // len(_RUN_COLUMNS))
)
#: Ids per look-up of the ids already stored.
_SQLITE_IDS_PER_SELECT: Final = _power_of_two_at_most(min(1024, _SQLITE_VARIABLES))
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
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, float) and not math.isfinite(v) for v in value):
            # One non-finite float becomes text: so do the others, or the
            # list would come back with mixed types (not an attribute value).
            return [repr(v) if isinstance(v, float) else clean_json(v) for v in value]
        return [clean_json(v) for v in value]
    return value


@dataclass(slots=True)
class CollectorUpdate:
    """What one batch adds to a collector's ``collection_metadata`` row.

    Times are kept as unix nanoseconds while runs are added (a thousand runs a
    batch) and turned into datetimes once, when the row is made.
    """

    collector_type: str
    first_ns: int | None = None
    last_ns: int | None = None
    last_status: str | None = None
    success_ns: int | None = None
    failure_ns: int | None = None
    total_executions: int = 0
    successful_executions: int = 0
    failed_executions: int = 0
    total_records: int = 0

    def add(self, run: FinishedRun) -> None:
        start = run.start_ns
        ended = run.end_ns if run.end_ns is not None else start
        status = run.status
        self.total_executions += 1
        self.total_records += run.records_collected
        if self.first_ns is None or start < self.first_ns:
            self.first_ns = start
        if self.last_ns is None or start >= self.last_ns:
            self.last_ns = start
            self.last_status = status.value
        if status.is_successful:
            self.successful_executions += 1
            if self.success_ns is None or ended > self.success_ns:
                self.success_ns = ended
        elif status.is_error:
            self.failed_executions += 1
            if self.failure_ns is None or ended > self.failure_ns:
                self.failure_ns = ended

    @property
    def first_run(self) -> datetime | None:
        return _when(self.first_ns)

    @property
    def last_run(self) -> datetime | None:
        return _when(self.last_ns)

    @property
    def last_success(self) -> datetime | None:
        return _when(self.success_ns)

    @property
    def last_failure(self) -> datetime | None:
        return _when(self.failure_ns)


def _when(ns: int | None) -> datetime | None:
    return utc_ns(ns) if ns is not None else None


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


def sqlite_chunks(n: int, size: int) -> Iterator[slice]:
    """Slices of ``n`` items: whole chunks of ``size`` (a power of two), then the
    rest in powers of two, largest first.

    sqlite3 keeps a prepared statement per distinct SQL text (128 of them), and
    one with thousands of parameters takes a megabyte or more: with a chunk
    for every remainder, batches of varying sizes kept about 100 MB alive.
    This way a statement has at most ``log2(size) + 1`` sizes.
    """
    start = 0
    while n - start >= size:
        yield slice(start, start + size)
        start += size
    step = size
    while start < n:
        step //= 2
        if n - start >= step:
            yield slice(start, start + step)
            start += step


@functools.lru_cache(maxsize=16)
def sqlite_stored_ids(ids: int) -> str:
    """Which of ``ids`` execution ids are already stored."""
    marks = ", ".join("?" * ids)
    return f"SELECT execution_id FROM execution_history WHERE execution_id IN ({marks})"


@functools.lru_cache(maxsize=16)
def sqlite_insert_runs(rows: int) -> str:
    """One INSERT of ``rows`` runs; a run already stored is skipped."""
    group = f"({', '.join('?' * len(_RUN_COLUMNS))})"
    return (
        f"INSERT INTO execution_history ({', '.join(_RUN_COLUMNS)}) "
        f"VALUES {', '.join([group] * rows)} ON CONFLICT (execution_id) DO NOTHING"
    )


#: The last second ``sqlite_time`` formatted, and its text (one tuple: threads share it).
_LAST_SECOND: list[tuple[int, str]] = [(-1, "")]


def sqlite_time(ns: int) -> str:
    """What SQLAlchemy's SQLite DATETIME stores for ``utc_ns(ns)`` (naive UTC, microseconds).

    The writer formats two of these per run; runs of one batch mostly share
    their second, so its text is kept and only the microseconds are formatted.
    """
    second, fraction = divmod(ns // 1000, 1_000_000)
    last, text = _LAST_SECOND[0]
    if last != second:
        text = (_NAIVE_EPOCH + timedelta(seconds=second)).isoformat(" ")
        _LAST_SECOND[0] = (second, text)
    return f"{text}.{fraction:06d}"


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
