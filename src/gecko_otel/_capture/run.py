"""``Run``: one collection run in progress, and how its outcome is decided.

A Run is created by the decorator or context manager for every call, started
(span opened, context made current), and finished exactly once with the
exception or the returned value. Finishing classifies the outcome (see
`classify_exception` and `Run._read_result`), writes the span's
final attributes and status, records the duration histogram and ends the
span; the history processor captures the ended run as a FinishedRun.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context, trace
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode

from gecko_otel import semconv
from gecko_otel._capture.metadata import safe_str
from gecko_otel._capture.outcomes import (
    PLAIN_RESULTS,
    classify_exception,
    error_type_of,
    read_result,
)
from gecko_otel._checks import MAX_RECORDS_PER_RUN
from gecko_otel._guard import guarded, report_internal_error
from gecko_otel._values.records import (
    AttributeValue,
    ExecutionStatus,
    FinishedRun,
    new_execution_id,
    utc_ns,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from gecko_otel._capture.instruments import Prepared

logger = logging.getLogger("gecko_otel.run")

#: Context key under which the Run in progress is kept (beside the span).
RUN_KEY: Final = context.create_key("gecko_otel.run")
_new_tuple: Final = tuple.__new__


class _NoResult:
    """Marker: the run ended without a value to inspect."""


NO_RESULT: Final = _NoResult()


def current_run() -> Run | None:
    """The `Run` in progress in this thread or asyncio task, or ``None``.

    Uses the OpenTelemetry context (contextvars), so each thread and each
    asyncio task sees its own run; work started inside a run with a copied
    context (``asyncio.create_task``, ``contextvars.copy_context``) sees it too.
    """
    run = context.get_value(RUN_KEY)
    return run if isinstance(run, Run) else None


class Run:
    """A collection run in progress; get it with `current_run`.

    All methods are safe to call from any thread and never raise: a bad
    argument is logged and ignored, a call after the run ended is logged and
    ignored.

    Attributes:
        collector_type: The collector this run belongs to.
        execution_id: Unique id of the run (span attribute ``gecko.execution.id``).
        span: The run's OpenTelemetry span (a non-recording span when the SDK
            is disabled).
        otel_context: The OpenTelemetry Context with the run's span current,
            until the run ends (then None): attach it where the run's work
            continues in a thread pool, to parent that work's spans (tasks
            and ``copy_context`` inherit it already).
    """

    __slots__ = (
        "_dropped_messages",
        "_errors",
        "_lock",
        "_metadata",
        "_partial",
        "_prepared",
        "_records",
        "_start",
        "_thread",
        "_warnings",
        "collector_type",
        "duration_seconds",
        "error_message",
        "error_type",
        "execution_id",
        "otel_context",
        "span",
        "status",
    )

    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared
        self.collector_type = prepared.collector_type
        self.execution_id = new_execution_id()
        self.span: Span = INVALID_SPAN
        self.otel_context: context.Context | None = None
        self._records = 0
        self._warnings: list[str] = []
        self._errors: list[str] = []
        self._dropped_messages = 0
        self._metadata: Mapping[str, AttributeValue] = prepared.metadata
        self._partial = False
        self._lock = threading.Lock()
        self._start = 0.0
        self._thread = 0
        #: Set when the run has finished.
        self.status: ExecutionStatus | None = None
        self.duration_seconds: float | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None

    # -- what user code calls ------------------------------------------------

    @property
    def records_collected(self) -> int:
        """Records reported so far; assign to set the total."""
        return self._records

    @records_collected.setter
    def records_collected(self, value: int) -> None:
        if self._usable("records_collected", value):
            with self._lock:
                self._records = self._clamped("records_collected", value)

    def add_records(self, n: int = 1) -> None:
        """Add ``n`` (a non-negative int) to the records collected."""
        if self._usable("add_records", n):
            with self._lock:
                self._records = self._clamped("add_records", self._records + n)

    def warn(self, message: object) -> None:
        """Record a warning: the run ends ``partial`` unless it fails."""
        self._message(self._warnings, semconv.EVENT_WARNING, message)

    def error(self, message: object) -> None:
        """Record a non-fatal error: the run ends ``partial`` unless it fails."""
        self._message(self._errors, semconv.EVENT_ERROR, message)

    def mark_partial(self, reason: object = None) -> None:
        """Mark the run ``partial``; a ``reason`` is kept as a warning."""
        if self._ended("mark_partial"):
            return
        self._partial = True
        if reason is not None:
            self.warn(reason)

    def set_metadata(self, key: str, value: object) -> None:
        """Attach metadata to the run (sanitised and redacted like decorator metadata)."""
        if self._ended("set_metadata"):
            return
        with guarded("Run.set_metadata"):  # never raise into the collector
            items = self._prepared.instr.sanitizer.item(key, value)
            limit = self._prepared.instr.config.max_metadata_entries
            accepted: dict[str, AttributeValue] = {}
            with self._lock:
                own = dict(self._metadata)  # a fresh dict: records made earlier keep theirs
                for k, v in items.items():
                    if k in own or len(own) < limit:
                        own[k] = v
                        accepted[semconv.METADATA_PREFIX + k] = v
                self._metadata = MappingProxyType(own)
            if accepted:
                self.span.set_attributes(accepted)

    @property
    def thread_id(self) -> int:
        """The ident of the thread that started the run (0 before it started)."""
        return self._thread

    @property
    def metadata(self) -> Mapping[str, AttributeValue]:
        """The run's sanitised metadata (a copy)."""
        return dict(self._metadata)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Warnings recorded so far."""
        return tuple(self._warnings)

    @property
    def errors(self) -> tuple[str, ...]:
        """Non-fatal errors (and, once failed, the failure) recorded so far."""
        return tuple(self._errors)

    @property
    def start_time(self) -> datetime | None:
        """When the span started (aware UTC), if the span records times."""
        start = getattr(self.span, "start_time", None)
        return utc_ns(start) if start is not None else None

    @property
    def elapsed_seconds(self) -> float:
        """Seconds since the run started (its duration once finished)."""
        if self.duration_seconds is not None:
            return self.duration_seconds
        return time.perf_counter() - self._start if self._start else 0.0

    def __repr__(self) -> str:
        state = self.status.value if self.status else "running"
        return f"<Run {self.collector_type!r} {self.execution_id} {state}>"

    def _usable(self, what: str, n: object) -> bool:
        if self._ended(what):
            return False
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            logger.warning(
                "gecko_otel: %s(%r) ignored for %r: pass a non-negative int",
                what,
                n,
                self.collector_type,
            )
            return False
        return True

    def _clamped(self, what: str, records: int) -> int:
        if records <= MAX_RECORDS_PER_RUN:
            return records
        logger.warning(
            "gecko_otel: %s: %d records clamped to %d for %r (the most one run may report)",
            what,
            records,
            MAX_RECORDS_PER_RUN,
            self.collector_type,
        )
        return MAX_RECORDS_PER_RUN

    def _ended(self, what: str) -> bool:
        if self.status is None:
            return False
        logger.warning(
            "gecko_otel: %s() ignored: run %s of %r has already ended",
            what,
            self.execution_id,
            self.collector_type,
        )
        return True

    def _message(self, bucket: list[str], event: str, message: object) -> None:
        if self._ended("warn" if event == semconv.EVENT_WARNING else "error"):
            return
        with guarded("Run.warn/error"):  # never raise into the collector
            text = self._prepared.instr.sanitizer.text(message)
            with self._lock:
                if len(bucket) >= self._prepared.instr.config.max_messages_per_run:
                    self._dropped_messages += 1
                    return
                bucket.append(text)
            self.span.add_event(event, {semconv.EVENT_MESSAGE: text})

    # -- lifecycle, called by the decorator and context manager ---------------

    def start(self, extra: Mapping[str, AttributeValue] | None = None) -> context.Context:
        """Open the span (with ``extra`` attributes of this run alone); return the
        context to make current while the run works."""
        parent = context.set_value(RUN_KEY, self)
        attributes = dict(self._prepared.attributes)
        attributes[semconv.EXECUTION_ID] = self.execution_id
        if extra:
            attributes.update(extra)
        # The history processor finds this run in the parent context handed to
        # on_start; it binds it only while ``span`` is still unset.
        span = self._prepared.instr.tracer.start_span(
            self.collector_type, context=parent, attributes=attributes
        )
        self.span = span
        ctx = trace.set_span_in_context(span, parent)
        self.otel_context = ctx
        self._thread = threading.get_ident()
        self._start = time.perf_counter()
        return ctx

    def finish(self, exc: BaseException | None = None, result: object = NO_RESULT) -> None:
        """Classify the outcome, complete the span and metrics. Never raises."""
        duration = time.perf_counter() - self._start
        if self.status is not None:
            return
        span = self.span
        try:
            status = self._outcome(exc, result)
            self.duration_seconds = duration
            self.status = status
            if span.is_recording():
                attributes: dict[str, AttributeValue] = {
                    semconv.COLLECTION_STATUS: status.value,
                    semconv.COLLECTION_RECORDS: self._records,
                }
                if self._warnings:
                    attributes[semconv.COLLECTION_WARNINGS] = len(self._warnings)
                if self._errors:
                    attributes[semconv.COLLECTION_ERRORS] = len(self._errors)
                if self._dropped_messages:
                    attributes[semconv.COLLECTION_DROPPED_MESSAGES] = self._dropped_messages
                if self.error_type is not None:
                    attributes[semconv.ERROR_TYPE] = self.error_type
                span.set_attributes(attributes)
                if status.is_error:
                    if exc is not None:
                        self._record_exception(span, exc)
                    span.set_status(Status(StatusCode.ERROR, self.error_message))
            # In the run's context, so the measurement's exemplar names the run's
            # trace and span (the SDK's trace_based exemplar filter).
            self._prepared.instr.duration.record(
                duration,
                self._prepared.histogram_attributes(status, self.error_type),
                self.otel_context,
            )
        except Exception as internal:  # noqa: BLE001 - hot path: try is free, the guard is not
            report_internal_error("Run.finish", internal)
        finally:
            try:  # ends start + monotonic duration: a wall-clock step cannot put it first
                start = getattr(span, "start_time", None)  # None for a non-recording span
                span.end(start + int(duration * 1e9) if start else None)
            except Exception as internal:  # noqa: BLE001 - another span processor raised
                # The SDK does not shield span processors from each other, so
                # ours may never have seen this span end: forget the run.
                report_internal_error("span.end (a span processor raised)", internal)
                discard = self._prepared.instr.discard_run
                if discard is not None:
                    discard(self)
            self.otel_context = None  # break the Run -> Context -> Run cycle

    def _record_exception(self, span: Span, exc: BaseException) -> None:
        # Span.record_exception would export str(exc) and the traceback as
        # they are; a connection error easily carries a DSN with a password.
        sanitizer = self._prepared.instr.sanitizer
        stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        span.add_event(
            "exception",
            {
                "exception.type": self.error_type or error_type_of(exc),
                "exception.message": self.error_message or "",
                "exception.stacktrace": sanitizer.mask(stacktrace),
                "exception.escaped": "True",  # the decorator re-raises it
            },
        )

    def _outcome(self, exc: BaseException | None, result: object) -> ExecutionStatus:
        if exc is not None:
            status = classify_exception(exc)
            if status.is_error:
                self.error_type = error_type_of(exc)
                self.error_message = self._prepared.instr.sanitizer.text(exc) or None
                self._errors.append(
                    f"{self.error_type}: {self.error_message}"
                    if self.error_message
                    else self.error_type
                )
            return status
        if result is not NO_RESULT and result is not None and self._read_result(result):
            self.error_type = semconv.ERROR_TYPE_OTHER
            self.error_message = (
                self._errors[0] if self._errors else "result reported success=False"
            )
            return ExecutionStatus.FAILURE
        if self._partial or self._warnings or self._errors:
            return ExecutionStatus.PARTIAL
        return ExecutionStatus.SUCCESS

    def _read_result(self, result: object) -> bool:
        """Read a returned result object; True when it says the run failed.

        Reads ``records_collected``, ``errors``, ``warnings`` and ``success``
        when present (as the GeckoTerminal collector's ``CollectionResult``
        has them). A result's ``records_collected`` replaces the count the
        run reported, since the result is the run's final word.
        """
        if isinstance(result, PLAIN_RESULTS):
            return False
        try:
            report = read_result(result)
        except Exception as exc:  # noqa: BLE001 - a result's property raised
            logger.warning(
                "gecko_otel: could not read the result of %r: %s",
                self.collector_type,
                safe_str(exc),
            )
            return False
        if report.records is not None:
            self._records = self._clamped("result.records_collected", report.records)
        text = self._prepared.instr.sanitizer.text
        limit = self._prepared.instr.config.max_messages_per_run
        for bucket, messages in ((self._errors, report.errors), (self._warnings, report.warnings)):
            for message in messages:
                if len(bucket) >= limit:
                    self._dropped_messages += 1
                else:
                    bucket.append(text(message))
        return report.failed

    def finished(self, span: ReadableSpan) -> FinishedRun:
        """The finished run, timed by ``span`` (O(1): one tuple, no conversions)."""
        ctx = span.context
        # tuple.__new__ directly: the NamedTuple's own __new__ is a Python
        # function that only repacks the same positional values.
        return _new_tuple(
            FinishedRun,
            (
                self.collector_type,
                self.execution_id,
                self.status or ExecutionStatus.FAILURE,
                span.start_time or time.time_ns(),
                span.end_time,
                self.duration_seconds,
                self._records,
                tuple(self._errors) if self._errors else (),
                tuple(self._warnings) if self._warnings else (),
                self._metadata,
                self.error_type,
                self.error_message,
                ctx.trace_id if ctx is not None else None,
                ctx.span_id if ctx is not None else None,
                self._dropped_messages,
                self._start or None,  # perf_counter: this process's order
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the run (used by ``Monitor.export()``)."""
        start = self.start_time
        return {
            "collector_type": self.collector_type,
            "execution_id": self.execution_id,
            "status": self.status.value if self.status else "running",
            "start_time": start.isoformat() if start else None,
            "elapsed_seconds": self.elapsed_seconds,
            "records_collected": self._records,
            "warnings": len(self._warnings),
            "errors": len(self._errors),
        }
