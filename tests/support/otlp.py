"""A real OTLP/gRPC receiver on a loopback port, for tests that export to one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class Receiver:
    """What the OTLP receiver got, and on which port it listens."""

    port: int
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _traces: list[Any] = field(default_factory=list)
    _metrics: list[Any] = field(default_factory=list)

    def add_traces(self, request: Any) -> None:
        with self._lock:
            self._traces.append(request)

    def add_metrics(self, request: Any) -> None:
        with self._lock:
            self._metrics.append(request)

    @property
    def trace_requests(self) -> list[Any]:
        with self._lock:
            return list(self._traces)

    @property
    def metric_requests(self) -> list[Any]:
        with self._lock:
            return list(self._metrics)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver.add_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self._receiver.add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """A real OTLP/gRPC receiver on a free loopback port."""
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-receiver")
    server = grpc.server(executor)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port, "could not bind a loopback port for the OTLP receiver"
    received = Receiver(port=port)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(received), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(received), server)
    server.start()
    try:
        yield received
    finally:
        server.stop(grace=None).wait(5)
        executor.shutdown(wait=True)
