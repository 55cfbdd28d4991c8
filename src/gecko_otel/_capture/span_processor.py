"""The execution-history span processor: ended collection spans become records.

Threading contract (as the OpenTelemetry SDK's own processors state it):
``on_start`` and ``on_end`` are called synchronously on the thread that
starts or ends the span, so they do O(1) work, no I/O, and never raise. Any
internal error is logged and counted by `gecko_otel._guard`.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SDKSpan
from opentelemetry.trace import INVALID_SPAN

from gecko_otel._capture.run import RUN_KEY, Run
from gecko_otel._guard import at_fork_in_child, report_internal_error

logger = logging.getLogger("gecko_otel.monitor")

if TYPE_CHECKING:
    from collections.abc import Callable, Container

    from gecko_otel._capture.instruments import Instrumentation
    from gecko_otel._values.records import FinishedRun


class HistorySpanProcessor(SpanProcessor):
    """Tracks active runs and hands each finished one to history.

    A span is a collection run when gecko-otel started it for a `Run`
    of this processor's Monitor; every other span (HTTP calls inside a run,
    the application's own spans) is ignored at the cost of one dict lookup.

    Args:
        instrumentation: The Monitor's instrumentation; runs of other Monitors
            sharing the same TracerProvider are left to their own processor.
        on_record: Called on the ending thread with each
            `FinishedRun` (history, health and
            alerts take it from there); must be O(1) and must not block.
        on_run_start: Called on the starting thread with the collector type
            and execution id of each run that starts (schedule expectations
            resolve ``missed_run`` there); must be O(1) and must not block.
        watched: The collector types ``on_run_start`` is called for (a live
            container: schedule expectations add and remove names).
    """

    def __init__(
        self,
        instrumentation: Instrumentation,
        on_record: Callable[[FinishedRun], None],
        on_run_start: Callable[[str, str], None],
        watched: Container[str],
    ) -> None:
        self._on_record = on_record
        self._on_run_start = on_run_start
        self._watched = watched
        self._instrumentation = instrumentation
        # span_id -> Run. dict get/set/pop are atomic under the GIL, so the
        # hot path takes no lock.
        self._active: dict[int, Run] = {}
        self._shutdown = False
        at_fork_in_child(self, "_after_fork")

    def _after_fork(self) -> None:
        # Only the forking thread survives fork(); runs other threads had in
        # progress will never end in the child.
        me = threading.get_ident()
        self._active = {k: run for k, run in self._active.items() if run.thread_id == me}

    def on_start(self, span: SDKSpan, parent_context: Context | None = None) -> None:
        if parent_context is None or self._shutdown:
            return
        try:
            run = parent_context.get(RUN_KEY)
            # Child spans inside a run see the same Run in their parent
            # context; only the run's own span arrives while it is unset.
            if (
                isinstance(run, Run)
                and run.span is INVALID_SPAN
                # hot path: an attribute read, not a method call
                and run._prepared.instr is self._instrumentation  # noqa: SLF001
            ):
                self._active[span.context.span_id] = run
                if run.collector_type in self._watched:  # O(1), no call for most runs
                    self._on_run_start(run.collector_type, run.execution_id)
        except Exception as exc:  # noqa: BLE001 - must not raise into span creation
            report_internal_error("HistorySpanProcessor.on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None:
            return
        run = self._active.pop(ctx.span_id, None)
        if run is None or self._shutdown:
            return
        try:
            self._on_record(run.finished(span))
        except Exception as exc:  # noqa: BLE001 - must not raise into span.end()
            report_internal_error("HistorySpanProcessor.on_end", exc)

    def discard(self, run: Run) -> None:
        """Forget ``run`` if it is still tracked as active."""
        ctx = run.span.get_span_context()
        if self._active.get(ctx.span_id) is run:
            self._active.pop(ctx.span_id, None)

    def active_runs(self) -> list[Run]:
        """Runs started and not yet ended, oldest first."""
        runs = list(self._active.values())
        runs.sort(key=lambda run: run.elapsed_seconds, reverse=True)
        return runs

    def shutdown(self) -> None:
        self._shutdown = True
        self._active.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Nothing is buffered: records reach history inside on_end.
        return True


def attach(tracer_provider: object, processor: HistorySpanProcessor) -> None:
    """Add ``processor`` to an SDK ``TracerProvider``; warn that runs get no history otherwise."""
    add = getattr(tracer_provider, "add_span_processor", None)
    if add is None:
        logger.warning(
            "gecko_otel: %s is not an OpenTelemetry SDK TracerProvider; runs get spans "
            "but no history. Pass an opentelemetry.sdk.trace.TracerProvider.",
            type(tracer_provider).__name__,
        )
        return
    add(processor)
