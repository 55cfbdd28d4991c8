"""Keep history complete whatever the trace sampler decides.

Export follows the sampler, but history and health must see every run. The
SDK runs span processors for every *recording* span and exports only the
*sampled* ones, so a sampler that turns ``DROP`` into ``RECORD_ONLY`` gives
exactly that: the span is recorded (our processor sees it), its sampled flag
stays off (no exporter sends it, and children under a ``ParentBased`` sampler
are dropped as before).

The wrapper is installed on gecko-otel's own SDK tracer only, so it never
changes how the application's other spans are sampled.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer as SDKTracer
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Tracer
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class RecordAllCollections(Sampler):
    """Delegates to ``inner``; a ``DROP`` becomes ``RECORD_ONLY``.

    Threading: stateless beyond ``inner``; as thread-safe as ``inner`` is.
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(  # noqa: PLR0917 - the SDK Sampler signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            # A DROP result carries no attributes, and the SDK builds the span
            # from the result's attributes, so hand the originals back.
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordAllCollections{{{self.inner.get_description()}}}"


def record_all_runs(tracer: Tracer) -> bool:
    """Make ``tracer`` record every span it starts; True when it could.

    Only SDK tracers have a sampler to wrap; a no-op or foreign tracer is left
    alone (its runs then reach history only when they are sampled).
    """
    if not isinstance(tracer, SDKTracer):
        return False
    if not isinstance(tracer.sampler, RecordAllCollections):
        tracer.sampler = RecordAllCollections(tracer.sampler)
    return True
