"""The live status page and probe endpoints, over HTTP.

``serve(database_url)`` serves a store that monitors write (what
``gecko-otel serve`` runs); ``Monitor.serve_http()`` serves a running
Monitor from inside its process. Both are a `StatusServer` over a
`StatusSource`: `StoreSource` or `MonitorSource`.

Routes: ``/`` (the page), ``/healthz``, ``/readyz``, ``/status``,
``/alerts``, ``/runs``; see the status page guide for their JSON.
`StoreSource` and `serve` load SQLAlchemy on first use only, so a
memory-only process never imports it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gecko_otel.serving.routes import SCHEMA_VERSION
from gecko_otel.serving.server import StatusServer, serve
from gecko_otel.serving.sources import (
    CollectorView,
    MonitorSource,
    SourceUnavailable,
    StatusSource,
)

if TYPE_CHECKING:
    from gecko_otel.serving.store_source import StoreSource

__all__ = [
    "SCHEMA_VERSION",
    "CollectorView",
    "MonitorSource",
    "SourceUnavailable",
    "StatusServer",
    "StatusSource",
    "StoreSource",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name != "StoreSource":
        raise AttributeError(f"module 'gecko_otel.serving' has no attribute {name!r}")
    value = importlib.import_module("gecko_otel.serving.store_source").StoreSource
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
