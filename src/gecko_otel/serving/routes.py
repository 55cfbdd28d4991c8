"""The routes: a request (method, target, credentials) in, a `Response` out.

No sockets here, so every route's status, headers and body can be built and
read in isolation. The JSON documents are described in ``docs/status-page.md``;
each carries ``schema_version`` (`SCHEMA_VERSION`), raised only when a field
changes meaning or goes away (new fields do not raise it).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from gecko_otel._values.health import AlertLevel, CollectionStatus, worst
from gecko_otel._values.records import ExecutionRecord, iso
from gecko_otel.errors import ConfigError
from gecko_otel.serving.metrics import Exposition
from gecko_otel.serving.page import Page
from gecko_otel.serving.sources import CollectorView, SourceUnavailable, StatusSource

#: The version of the JSON documents' shapes.
SCHEMA_VERSION: Final = 1
#: Runs per collector in ``/status`` (the sparkline).
RECENT_RUNS: Final = 30
#: Active alerts listed in ``/status``.
STATUS_ALERTS: Final = 100
#: Default and largest ``limit`` of ``/runs`` and ``/alerts``.
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1000

_JSON: Final = "application/json"
_HTML: Final = "text/html; charset=utf-8"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
#: Paths served without the bearer token: a kubelet's or load balancer's probe
#: carries no secret. Without it ``/readyz`` says whether, not why not.
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz"})
#: Seconds an answer to ``/readyz`` without the token is reused: anyone who
#: reaches the port may ask, and each fresh answer takes a database connection.
OPEN_READINESS_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class Response:
    """What to send back: status, body and its type, extra headers."""

    status: int
    body: bytes
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()


class BadRequest(Exception):
    """A query parameter is invalid; the message says which (400)."""


def json_response(status: int, document: Mapping[str, Any], *extra: tuple[str, str]) -> Response:
    """``document`` with ``schema_version`` first, as UTF-8 JSON."""
    body = {"schema_version": SCHEMA_VERSION, **document}
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), _JSON, extra)


def error(status: int, message: str, *extra: tuple[str, str]) -> Response:
    """``{"schema_version": 1, "error": message}``."""
    return json_response(status, {"error": message}, *extra)


class Router:
    """Answers the status server's requests from a `StatusSource`.

    Args:
        source: Where the data comes from.
        token: The bearer token every path but the probes (``/healthz``,
            ``/readyz``) needs, or None.
        page: The status page.
        server_counts: The server's own counters, shown in ``/status``.
        metrics: Renders ``/metrics``; None answers 404 with ``no_metrics``.
        no_metrics: Why there is no ``/metrics``, for that 404.

    Threading: `route` is called on connection threads, several at once; it
    keeps no state between calls but the last readiness answered without the
    token (replaced whole: a race costs one more check).
    """

    def __init__(
        self,
        source: StatusSource,
        *,
        token: str | None,
        page: Page,
        server_counts: Callable[[], dict[str, int]],
        metrics: Exposition | None = None,
        no_metrics: str = "no /metrics on this server",
    ) -> None:
        self._source = source
        self._metrics = metrics
        self._no_metrics = no_metrics
        self._token = token.encode("utf-8") if token is not None else None
        self._page = page
        self._counts = server_counts
        self._open_readiness: tuple[float, tuple[bool, str | None]] | None = None
        self._routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/": lambda _query: Response(200, page.html, _HTML, page.headers),
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status,
            "/alerts": self._alerts,
            "/runs": self._runs,
            "/metrics": self._prometheus,
        }

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries the token (constant time)."""
        if self._token is None:
            return True
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        given = credentials.strip().encode("utf-8", "surrogateescape")
        # compare_digest always runs, so a wrong scheme takes as long as a wrong token
        same = hmac.compare_digest(given, self._token)
        return same and scheme.lower() == "bearer"

    def route(self, target: str, authorization: str | None) -> Response:
        """The response to a GET (or HEAD) of ``target`` with this ``Authorization``."""
        parts = urlsplit(target)
        handler = self._routes.get(parts.path)
        if handler is None:
            return error(404, f"no such path; try {', '.join(sorted(self._routes))}")
        authorized = self.authorized(authorization)
        if parts.path not in OPEN_PATHS and not authorized:
            challenge = ("WWW-Authenticate", 'Bearer realm="gecko-otel"')
            if parts.path == "/":  # the page without data asks for the token itself
                return Response(401, self._page.html, _HTML, (*self._page.headers, challenge))
            return error(401, "this server needs 'Authorization: Bearer <token>'", challenge)
        try:
            query = parse_qs(parts.query, keep_blank_values=True, max_num_fields=16)
            if parts.path == "/readyz":
                return self._readyz(detail=authorized)
            return handler(query)
        except (BadRequest, ValueError) as exc:
            return error(400, str(exc))
        except SourceUnavailable as exc:
            return error(503, str(exc), ("Retry-After", "5"))

    # -- routes ---------------------------------------------------------------------

    def _healthz(self, _query: dict[str, list[str]]) -> Response:
        alive = self._source.alive()
        return json_response(200 if alive else 503, {"status": "ok" if alive else "broken"})

    def _prometheus(self, _query: dict[str, list[str]]) -> Response:
        if self._metrics is None:
            return error(404, self._no_metrics)
        body, content_type = self._metrics()
        return Response(200, body, content_type)

    def _readyz(
        self, _query: dict[str, list[str]] | None = None, *, detail: bool = True
    ) -> Response:
        if detail:
            ready, reason = self._source.readiness()
        else:  # why not may name the database or its error: only for the token's holders
            ready, reason = self._readiness_without_token(), None
        return json_response(200 if ready else 503, {"ready": ready, "reason": reason})

    def _readiness_without_token(self) -> bool:
        now = time.monotonic()
        cached = self._open_readiness
        if cached is None or now - cached[0] >= OPEN_READINESS_SECONDS:
            cached = self._open_readiness = (now, self._source.readiness())
        return cached[1][0]

    def _status(self, query: dict[str, list[str]]) -> Response:
        probe = _flag(query, "probe", default=True)
        collectors = self._source.collectors(RECENT_RUNS)
        active = self._source.alerts(active_only=True, collector_type=None, level=None, limit=None)
        overall = worst([c.status for c in collectors])
        counts = {status.value: 0 for status in CollectionStatus}
        for collector in collectors:
            counts[collector.status.value] += 1
        per_level = {level.value: 0 for level in AlertLevel}
        for alert in active:
            per_level[alert.level.value] += 1
        document = {
            "generated_at": _now(),
            "source": self._source.kind,
            "status": overall.value,
            "collectors_by_status": counts,
            "active_alerts": per_level,
            "collectors": [_collector(c) for c in collectors],
            "alerts": [a.to_dict() for a in active[:STATUS_ALERTS]],
            "server": self._counts(),
        }
        critical = overall is CollectionStatus.CRITICAL
        return json_response(503 if critical and probe else 200, document)

    def _alerts(self, query: dict[str, list[str]]) -> Response:
        level_text = _one(query, "level")
        try:
            level = AlertLevel.parse(level_text) if level_text else None
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        resolved = _flag(query, "resolved")
        limit = _limit(query)
        found = self._source.alerts(
            active_only=not resolved,
            collector_type=_one(query, "collector"),
            level=level,
            limit=limit,
        )
        return json_response(
            200, {"generated_at": _now(), "alerts": [a.to_dict() for a in found[:limit]]}
        )

    def _runs(self, query: dict[str, list[str]]) -> Response:
        collector = _one(query, "collector")
        limit = _limit(query)
        found = self._source.runs(collector, limit)
        return json_response(
            200,
            {"generated_at": _now(), "collector": collector, "runs": [r.to_dict() for r in found]},
        )


def _collector(view: CollectorView) -> dict[str, Any]:
    newest = view.recent_runs[0] if view.recent_runs else None
    return {
        "collector_type": view.collector_type,
        "status": view.status.value,
        "health_score": view.health_score,
        "consecutive_failures": view.consecutive_failures,
        "total_executions": view.total_executions,
        "last_run": iso(newest.start_time) if newest is not None else None,
        "last_success": iso(view.last_success),
        "last_failure": iso(view.last_failure),
        "issues": list(view.issues),
        "recent_runs": [_run_point(r) for r in view.recent_runs],
    }


def _run_point(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": record.execution_id,
        "status": record.status.value,
        "start_time": iso(record.start_time),
        "duration_seconds": record.duration_seconds,
        "records_collected": record.records_collected,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"give {name!r} once")
    return values[0] or None


def _flag(query: dict[str, list[str]], name: str, *, default: bool = False) -> bool:
    value = _one(query, name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BadRequest(f"{name!r} is true or false, not {value[:40]!r}")


def _limit(query: dict[str, list[str]]) -> int:
    value = _one(query, "limit")
    if value is None:
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise BadRequest(f"'limit' is a whole number from 1 to {MAX_LIMIT}, not {value[:40]!r}")
    return int(value)
