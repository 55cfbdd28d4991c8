"""Helpers shared by the store tests: Monitors on a database, direct Store access, raw rows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any
from uuid import uuid4

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, Table, event, select

from gecko_otel import Alert, AlertLevel, AlertState, ExecutionStatus, MonitorConfig
from gecko_otel._monitor import Monitor
from gecko_otel._values.records import FinishedRun, to_ns
from gecko_otel.store.engine import create_store_engine
from gecko_otel.store.store import Store
from gecko_otel.testing import FakeClock

#: Message of the Monitor's fallback to memory (a store-backed query that did not use the store).
FALLBACK = "answering from this process's memory"


class StoredMonitor:
    """A Monitor on a database with what the tests look at: alerts heard, spans exported."""

    def __init__(
        self, monitor: Monitor, notifications: list[Alert], spans: InMemorySpanExporter
    ) -> None:
        self.monitor = monitor
        self.notifications = notifications
        self.spans = spans


@contextmanager
def stored_monitor(
    database: str | Engine | None,
    *,
    service_name: str = "svc-a",
    instance: str = "instance-a",
    clock: FakeClock | None = None,
    **config: Any,
) -> Iterator[StoredMonitor]:
    """A Monitor on ``database`` (None: memory only) built as the other tests build theirs.

    SDK providers with a Resource naming the service, an in-memory span exporter, no
    watchdog, a fake clock, and the success-rate rule out of the way unless asked for.
    """
    config.setdefault("min_runs_for_rate", 1000)
    resource = Resource.create({"service.name": service_name, "service.instance.id": instance})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False
    )
    notifications: list[Alert] = []
    try:
        monitor = Monitor(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            config=MonitorConfig(**config),
            alert_handlers=[notifications.append],
            owned_providers=[tracer_provider, meter_provider],
            clock=clock if clock is not None else FakeClock(),
            watchdog=False,
            database=database,
        )
    except BaseException:
        tracer_provider.shutdown()
        meter_provider.shutdown()
        raise
    try:
        yield StoredMonitor(monitor, notifications, spans)
    finally:
        monitor.shutdown()


@contextmanager
def direct_store(url: str, *, service_name: str = "direct") -> Iterator[Store]:
    """A Store of our own on ``url`` (its own engine, schema migrated), closed afterwards."""
    store = Store(
        create_store_engine(url), service_name=service_name, service_instance_id="direct-1"
    )
    try:
        store.ensure_schema()
        yield store
    finally:
        store.close()


def finished(
    collector: str,
    start: datetime,
    *,
    status: ExecutionStatus = ExecutionStatus.SUCCESS,
    duration: float | None = 0.5,
    records: int = 0,
    execution_id: str | None = None,
    warnings: tuple[str, ...] = (),
    errors: tuple[str, ...] = (),
    metadata: Mapping[str, Any] | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> FinishedRun:
    """A FinishedRun as the span processor hands it over, started at ``start``."""
    start_ns = to_ns(start)
    end_ns = None if duration is None else start_ns + round(duration * 1e9)
    return FinishedRun(
        collector,
        execution_id or uuid4().hex,
        status,
        start_ns,
        end_ns,
        duration,
        records,
        errors,
        warnings,
        MappingProxyType(dict(metadata or {})),
        error_type,
        error_message,
        None,
        None,
        0,
    )


def alert(
    store: Store,
    collector: str,
    *,
    state: AlertState,
    fired_at: datetime,
    resolved_at: datetime | None = None,
    rule: str = "consecutive_failures",
) -> dict[str, Any]:
    """A ``system_alerts`` row for Store.write, made as the Monitor makes them."""
    snapshot = Alert(
        id=uuid4().hex,
        level=AlertLevel.CRITICAL,
        collector_type=collector,
        rule=rule,
        message=f"{collector} is failing",
        timestamp=fired_at,
        metadata={"consecutive_failures": 3},
        state=state,
        fired_at=fired_at,
        last_notified_at=fired_at,
        acknowledged_at=fired_at + timedelta(minutes=1)
        if state is AlertState.ACKNOWLEDGED
        else None,
        resolved_at=resolved_at,
        notifications=1,
    )
    return store.alert_row(snapshot, AlertLevel.CRITICAL)


def metric_point(name: str, timestamp: datetime, **values: Any) -> dict[str, Any]:
    """A complete ``performance_metrics`` row for Store.write."""
    row: dict[str, Any] = {
        "name": name,
        "collector_type": None,
        "kind": "gauge",
        "value": 1.0,
        "count": None,
        "min": None,
        "max": None,
        "unit": None,
        "labels": {},
        "start_time": None,
        "timestamp": timestamp,
        "service_name": "direct",
        "service_instance_id": "direct-1",
    }
    row.update(values)
    return row


def rows(engine: Engine, table: Table, *order_by: Any) -> list[dict[str, Any]]:
    """Every row of ``table`` as dicts (ordered by ``order_by``, else by its first column)."""
    query = select(table).order_by(*(order_by or (next(iter(table.c)),)))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` checked to be aware UTC (offset 0), for column comparisons."""
    if moment is not None:
        assert moment.utcoffset() == timedelta(0), f"{moment!r} is not in UTC"
    return moment


def at(seconds: float) -> datetime:
    """A fake-clock reading as the aware datetime the alert engine stores."""
    return datetime.fromtimestamp(seconds, timezone.utc)


class StatementLog:
    """SQL statements an engine executes while attached (to count batches and chunks)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(" ".join(statement.split()))

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def count(self, prefix: str) -> int:
        """Statements starting with ``prefix`` (case-insensitive)."""
        return sum(s.upper().startswith(prefix.upper()) for s in self.statements)


_SETUP_IN_A_CHILD = """
import json, sys, gecko_otel
from opentelemetry import metrics, trace
error = None
try:
    gecko_otel.setup("svc", database_url=sys.argv[1])
except gecko_otel.ConfigError as exc:
    error = str(exc)
print(json.dumps({
    "error": error,
    "tracer": type(trace.get_tracer_provider()).__name__,
    "meter": type(metrics.get_meter_provider()).__name__,
}))
"""


def setup_in_a_child(url: str) -> dict[str, Any]:
    """``gecko_otel.setup(database_url=url)`` in a fresh interpreter: the ConfigError
    it raised (or None) and the types of the global providers afterwards."""
    done = subprocess.run(
        [sys.executable, "-c", _SETUP_IN_A_CHILD, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
