"""Execution statuses, records and statistics: the values history hands out.

Field names follow the GeckoTerminal collector's monitoring so its users can
migrate by changing imports; what gecko-otel adds is listed per class.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, NamedTuple, TypeAlias

#: A valid OpenTelemetry attribute value (what sanitised metadata holds).
_Primitive: TypeAlias = str | bool | int | float
AttributeValue: TypeAlias = (
    _Primitive | tuple[str, ...] | tuple[bool, ...] | tuple[int, ...] | tuple[float, ...]
)


# Our own generator: user code that calls random.seed() for reproducibility
# must not make execution ids repeat; reseeded in forked children.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


def new_execution_id() -> str:
    """A 128-bit id as 32 hex digits (the form of a trace id), ordered by time.

    48 bits of Unix milliseconds, then 80 random bits (the layout of a
    UUIDv7, without its version bits): ids made one after another sort one
    after another, so the store's unique index on them grows at one end
    instead of touching a random page per run (a third of a write's cost,
    once the index outgrows the page cache).
    """
    return f"{time.time_ns() // 1_000_000:012x}{_rng.getrandbits(80):020x}"


class ExecutionStatus(str, enum.Enum):
    """How a collection run ended.

    ``success`` and ``partial`` count as successful in success rates.
    ``missed`` and ``skipped`` are scheduled runs that never started; they
    have no duration.
    """

    SUCCESS = "success"
    PARTIAL = "partial"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    MISSED = "missed"
    SKIPPED = "skipped"

    @property
    def is_successful(self) -> bool:
        """True for ``success`` and ``partial``."""
        return self in _SUCCESSFUL

    @property
    def is_error(self) -> bool:
        """True for the statuses that set the span status to ERROR (failure, timeout)."""
        return self in _ERROR

    def __str__(self) -> str:
        return self.value


_SUCCESSFUL = frozenset({ExecutionStatus.SUCCESS, ExecutionStatus.PARTIAL})
_ERROR = frozenset({ExecutionStatus.FAILURE, ExecutionStatus.TIMEOUT})


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of an aware datetime, or None."""
    return value.isoformat() if value is not None else None


def utc_seconds(seconds: float | None) -> datetime | None:
    """Unix seconds -> aware UTC datetime, or None."""
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRecord:
    """One finished collection run.

    Added to the GeckoTerminal collector's fields: ``error_type`` (the
    exception's qualified class name, as in the span's ``error.type``),
    ``error_message``, and the run's ``trace_id`` / ``span_id`` (hex) so a
    record leads to its trace.

    Attributes:
        collector_type: The collector this run belongs to.
        execution_id: Unique id of the run (the span's ``gecko.execution.id``).
        status: How the run ended.
        start_time: When it started (timezone-aware UTC).
        end_time: When it ended (aware UTC): ``start_time`` plus
            ``duration_seconds``, so never before it even when the wall clock
            stepped back during the run; ``None`` for missed/skipped runs.
        duration_seconds: Run time measured with ``time.perf_counter()``;
            ``None`` for missed/skipped runs.
        records_collected: Records the run reported.
        errors: Non-fatal errors and the failure message, oldest first.
        warnings: Warnings, oldest first.
        metadata: Sanitised metadata (credentials redacted).
        error_type: Qualified exception class name for failures and timeouts.
        error_message: The exception's message, if any.
        trace_id: 32 hex digits, or ``None`` when no trace was recorded.
        span_id: 16 hex digits, or ``None``.
        dropped_messages: Warnings and errors beyond ``max_messages_per_run``
            that were counted but not kept.
    """

    collector_type: str
    execution_id: str
    status: ExecutionStatus
    start_time: datetime
    end_time: datetime | None
    duration_seconds: float | None
    records_collected: int = 0
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    metadata: Mapping[str, AttributeValue] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    dropped_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (datetimes as ISO 8601, status as its value)."""
        return {
            "collector_type": self.collector_type,
            "execution_id": self.execution_id,
            "status": self.status.value,
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "duration_seconds": self.duration_seconds,
            "records_collected": self.records_collected,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "metadata": {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.metadata.items()
            },
            "error_type": self.error_type,
            "error_message": self.error_message,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "dropped_messages": self.dropped_messages,
        }


# A frozen dataclass's __init__ goes through object.__setattr__ once per field,
# which is half the cost of recording a run. The history processor builds
# every record with this instead: the slot descriptors' own setters, in field
# order, with no validation (its values are already clean).
_RECORD_SETTERS: Final = tuple(
    getattr(ExecutionRecord, f.name).__set__ for f in dataclasses.fields(ExecutionRecord)
)
_new_object: Final = object.__new__


def make_record(*values: Any) -> ExecutionRecord:
    """An ExecutionRecord from all field values in declaration order (no validation)."""
    record: ExecutionRecord = _new_object(ExecutionRecord)
    for setter, value in zip(_RECORD_SETTERS, values, strict=True):
        setter(record, value)
    return record


def utc_ns(ns: int) -> datetime:
    """Unix nanoseconds -> aware UTC datetime, truncated exactly to the microsecond.

    (``datetime.fromtimestamp(ns / 1e9)`` goes through a float and may round
    up, which would put a run after a ``since`` bound equal to its own start.)
    """
    return _EPOCH + timedelta(microseconds=ns // 1000)


class FinishedRun(NamedTuple):
    """A finished run as the history processor captures it: immutable and cheap.

    ``on_end`` builds one of these (a tuple: a fraction of the cost of a
    dataclass with datetimes and hex ids) and history, health and alerting
    work from it; `to_record` makes the public
    `ExecutionRecord` when someone reads it.

    ``start_ns`` and ``end_ns`` are the span's: a run ends its span at the
    wall-clock start plus the monotonic duration, so the end never precedes
    the start whatever the wall clock did meanwhile. ``start_mono`` orders
    the runs of this process.
    """

    collector_type: str
    execution_id: str
    status: ExecutionStatus
    start_ns: int
    end_ns: int | None
    duration_seconds: float | None
    records_collected: int
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    metadata: Mapping[str, AttributeValue]
    error_type: str | None
    error_message: str | None
    trace_id: int | None
    span_id: int | None
    dropped_messages: int
    #: ``time.perf_counter()`` when the run started, for this process's order
    #: (wall times can step); None for runs restored from a store.
    start_mono: float | None = None

    def to_record(self) -> ExecutionRecord:
        """The public, frozen ExecutionRecord (aware UTC datetimes, hex ids)."""
        return make_record(
            self.collector_type,
            self.execution_id,
            self.status,
            utc_ns(self.start_ns),
            utc_ns(self.end_ns) if self.end_ns is not None else None,
            self.duration_seconds,
            self.records_collected,
            self.errors,
            self.warnings,
            self.metadata,
            self.error_type,
            self.error_message,
            f"{self.trace_id:032x}" if self.trace_id is not None else None,
            f"{self.span_id:016x}" if self.span_id is not None else None,
            self.dropped_messages,
        )

    @classmethod
    def from_record(cls, record: ExecutionRecord) -> FinishedRun:
        """The reverse of `to_record` (for records made elsewhere)."""
        return cls(
            record.collector_type,
            record.execution_id,
            record.status,
            to_ns(record.start_time),
            to_ns(record.end_time) if record.end_time is not None else None,
            record.duration_seconds,
            record.records_collected,
            tuple(record.errors),
            tuple(record.warnings),
            record.metadata,
            record.error_type,
            record.error_message,
            int(record.trace_id, 16) if record.trace_id else None,
            int(record.span_id, 16) if record.span_id else None,
            record.dropped_messages,
        )


def to_ns(value: datetime) -> int:
    """Aware datetime -> unix nanoseconds (exact to the microsecond)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionStatistics:
    """Aggregate figures over a collector's runs (or all collectors').

    Added to the GeckoTerminal collector's fields: counts for the other
    statuses, ``p50_duration`` / ``p95_duration``, ``records_per_second``
    and the time span covered.

    Attributes:
        collector_type: The collector, or ``None`` for all collectors together.
        total_executions: Runs counted, every status included.
        successful_executions: Runs with status ``success``.
        partial_executions: Runs with status ``partial``.
        failed_executions: Runs with status ``failure``.
        timeout_executions: Runs with status ``timeout``.
        cancelled_executions: Runs with status ``cancelled``.
        missed_executions: Scheduled runs recorded as ``missed``.
        skipped_executions: Scheduled runs recorded as ``skipped``.
        success_rate: Percent of runs that were ``success`` or ``partial``
            (0-100; 0 when there are no runs).
        average_duration: Mean run time in seconds over runs that have one.
        p50_duration: Median run time in seconds (within 1 % relative error).
        p95_duration: 95th-percentile run time in seconds (within 1 %).
        total_records_collected: Sum of records over the runs.
        records_per_second: Records divided by the summed run time.
        first_execution: Start of the oldest run counted.
        last_execution: Start of the newest run counted.
        window_seconds: The window asked for, or ``None`` for all runs.
    """

    collector_type: str | None
    total_executions: int = 0
    successful_executions: int = 0
    partial_executions: int = 0
    failed_executions: int = 0
    timeout_executions: int = 0
    cancelled_executions: int = 0
    missed_executions: int = 0
    skipped_executions: int = 0
    success_rate: float = 0.0
    average_duration: float = 0.0
    p50_duration: float = 0.0
    p95_duration: float = 0.0
    total_records_collected: int = 0
    records_per_second: float = 0.0
    first_execution: datetime | None = None
    last_execution: datetime | None = None
    window_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "collector_type": self.collector_type,
            "total_executions": self.total_executions,
            "successful_executions": self.successful_executions,
            "partial_executions": self.partial_executions,
            "failed_executions": self.failed_executions,
            "timeout_executions": self.timeout_executions,
            "cancelled_executions": self.cancelled_executions,
            "missed_executions": self.missed_executions,
            "skipped_executions": self.skipped_executions,
            "success_rate": self.success_rate,
            "average_duration": self.average_duration,
            "p50_duration": self.p50_duration,
            "p95_duration": self.p95_duration,
            "total_records_collected": self.total_records_collected,
            "records_per_second": self.records_per_second,
            "first_execution": iso(self.first_execution),
            "last_execution": iso(self.last_execution),
            "window_seconds": self.window_seconds,
        }
