"""The store's tables, defined once (SQLAlchemy Core) for SQLite and PostgreSQL.

Times are stored as timezone-aware UTC timestamps (``timestamptz`` on
PostgreSQL; ISO text on SQLite, which compares in time order because every
value is UTC with the same format). Messages and metadata are JSON. Every
column the queries filter or sort on is indexed; the history index also
covers the statistics columns, so statistics over a window read the index
only.

The migrations in ``gecko_otel/store/migrations`` create these tables; a
test checks that the migrated schema and this module agree. Change both
together, with a new revision, and bump `HEAD_REVISION`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

#: The Alembic revision this code reads and writes.
HEAD_REVISION: Final = "0005"
#: Alembic's version table, named for us so a database shared with an
#: application that uses Alembic itself keeps both histories apart.
VERSION_TABLE: Final = "gecko_otel_schema_version"
#: Longest collector type, rule, error type and service name stored (longer
#: values are cut; collector types are refused beyond it when declared, see
#: gecko_otel._capture.decorators.MAX_COLLECTOR_TYPE_LENGTH).
NAME_LENGTH: Final = 255


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes aware datetimes")
        value = value.astimezone(timezone.utc)
        # SQLite keeps text: a naive UTC value keeps one format, so text
        # order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = (
            datetime.fromisoformat(value) if isinstance(value, str) else value
        )  # text: raw SQLite from an untyped expression
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)  # PostgreSQL answers in the session's zone


#: Surrogate keys: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
Key = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

execution_history = Table(
    "execution_history",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("execution_id", String(64), nullable=False, unique=True),
    Column("collector_type", String(NAME_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", UTCDateTime(), nullable=False),
    Column("end_time", UTCDateTime()),
    Column("duration_seconds", Float),
    # Log-bucket key of the duration (gecko_otel._history.memory.duration_key), so
    # percentiles come from a GROUP BY instead of a sort.
    Column("duration_bucket", Integer),
    Column("records_collected", BigInteger, nullable=False, default=0),
    Column("error_type", String(NAME_LENGTH)),
    Column("error_message", Text),
    Column("warnings", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("dropped_messages", Integer, nullable=False, default=0),
    Column("metadata", JSON, nullable=False),
    Column("trace_id", String(32)),
    Column("span_id", String(16)),
    Column("service_name", String(NAME_LENGTH)),
    Column("service_instance_id", String(64)),
    Index(
        "ix_execution_history_collector_start",
        "collector_type",
        "start_time",
        "status",
        "duration_bucket",
        "duration_seconds",
        "records_collected",
    ),
    Index("ix_execution_history_start", "start_time"),
)

performance_metrics = Table(
    "performance_metrics",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("collector_type", String(NAME_LENGTH)),
    # sum (monotonic, delta), updown (cumulative), gauge or histogram (delta);
    # a histogram point's value is its sum, with count, min and max beside it.
    Column("kind", String(16), nullable=False),
    Column("value", Float, nullable=False),
    Column("count", BigInteger),
    Column("min", Float),
    Column("max", Float),
    Column("unit", String(64)),
    Column("labels", JSON, nullable=False),
    Column("start_time", UTCDateTime()),
    Column("timestamp", UTCDateTime(), nullable=False),
    Column("service_name", String(NAME_LENGTH)),
    Column("service_instance_id", String(64)),
    Index("ix_performance_metrics_name_time", "name", "timestamp"),
    Index("ix_performance_metrics_collector_time", "collector_type", "timestamp"),
    Index("ix_performance_metrics_time", "timestamp"),
)

system_alerts = Table(
    "system_alerts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("collector_type", String(NAME_LENGTH), nullable=False),
    Column("rule", String(NAME_LENGTH), nullable=False),
    Column("level", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("fired_at", UTCDateTime(), nullable=False),
    Column("last_notified_at", UTCDateTime()),
    Column("notified_level", String(16)),
    Column("notifications", Integer, nullable=False, default=0),
    Column("acknowledged_at", UTCDateTime()),
    Column("resolved_at", UTCDateTime()),
    Column("suppressed", Boolean, nullable=False, default=False),
    Column("service_name", String(NAME_LENGTH)),
    Column("service_instance_id", String(64)),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_system_alerts_state", "state", "fired_at"),
    Index("ix_system_alerts_collector", "collector_type", "fired_at"),
    Index("ix_system_alerts_resolved", "resolved_at"),
)

collection_metadata = Table(
    "collection_metadata",
    metadata,
    Column("collector_type", String(NAME_LENGTH), primary_key=True),
    Column("first_run", UTCDateTime()),
    Column("last_run", UTCDateTime()),
    Column("last_status", String(16)),
    Column("last_success", UTCDateTime()),
    Column("last_failure", UTCDateTime()),
    Column("total_executions", BigInteger, nullable=False, default=0),
    Column("successful_executions", BigInteger, nullable=False, default=0),
    Column("failed_executions", BigInteger, nullable=False, default=0),
    Column("total_records", BigInteger, nullable=False, default=0),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("health_status", String(16)),
    Column("health_score", Float),
    Column("service_name", String(NAME_LENGTH)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: Silences set from the command line: every Monitor on the store holds back
#: the notifications of matching alerts while one is active (not ended, not expired).
silences = Table(
    "silences",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("collector_type", String(NAME_LENGTH), nullable=False),
    Column("rule", String(NAME_LENGTH)),  # None: every rule of the collector
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("comment", Text),
    Column("created_by", String(NAME_LENGTH)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime()),  # set by unsilence
    Index("ix_silences_ends", "ended_at", "ends_at"),
)

#: Thresholds set from the command line: every Monitor on the store applies
#: them over its configured ones. One row per (collector, threshold);
#: ``collector_type`` '' holds the values for every collector.
thresholds = Table(
    "thresholds",
    metadata,
    Column("collector_type", String(NAME_LENGTH), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Float, nullable=False),
    Column("updated_by", String(NAME_LENGTH)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: Each collector's baseline (`gecko_otel._health.baseline`), so it survives
#: restarts and processes running the same collector share it. Centres and
#: spreads are on the log scales the estimator uses.
baselines = Table(
    "baselines",
    metadata,
    Column("collector_type", String(NAME_LENGTH), primary_key=True),
    Column("runs", Integer, nullable=False),
    Column("records_center", Float, nullable=False),
    Column("records_spread", Float, nullable=False),
    Column("zero_share", Float, nullable=False),
    Column("duration_runs", Integer, nullable=False),
    Column("duration_center", Float, nullable=False),
    Column("duration_spread", Float, nullable=False),
    Column("last_records_at", UTCDateTime()),
    Column("updated_by", String(NAME_LENGTH)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: Every table, in the order retention and export walk them.
TABLES: Final = (
    execution_history,
    performance_metrics,
    system_alerts,
    collection_metadata,
    silences,
    thresholds,
    baselines,
)
