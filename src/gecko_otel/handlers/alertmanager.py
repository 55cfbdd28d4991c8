"""``AlertmanagerAlertHandler``: push alerts to Prometheus Alertmanager like Prometheus does.

Alertmanager's v2 API takes a list of alerts, each a label set (its
identity, which Alertmanager groups and deduplicates on), annotations, and
``startsAt``/``endsAt``. Prometheus keeps a firing alert alive by
re-sending it every ``resend_delay`` with ``endsAt`` a few resend intervals
ahead, and sends it once more with ``endsAt`` set to the resolution time
when it resolves; if Prometheus dies, Alertmanager resolves the alert by
itself once ``endsAt`` passes. This handler does the same with a daemon
thread.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace

from gecko_otel._capture.metadata import MetadataSanitizer
from gecko_otel._checks import check_seconds
from gecko_otel._guard import at_fork_in_child, guarded
from gecko_otel._values.alerts import AlertState, Notification
from gecko_otel._values.records import AttributeValue
from gecko_otel.errors import AlertDeliveryError, ConfigError
from gecko_otel.handlers._http import Endpoint, build_opener, display_url, post_json

if TYPE_CHECKING:
    from gecko_otel._values.alerts import Alert

__all__ = ["AlertmanagerAlertHandler"]

logger = logging.getLogger("gecko_otel.handlers.alertmanager")

API_PATH: Final = "/api/v2/alerts"
#: ``endsAt`` of a firing alert is this many resend intervals ahead (Prometheus uses 4).
RESEND_HORIZON: Final = 4
#: Label names the handler sets itself; user labels may not replace them.
#: Named as on gecko-otel's metric series (and so on Prometheus' alerts from
#: collector-config/), so Alertmanager groups and inhibits across both sources.
RESERVED_LABELS: Final = frozenset(
    {"alertname", "gecko_collector_type", "gecko_alert_rule", "severity", "service_name"}
)
#: Annotation names the handler sets itself (plus every ``figure_*``).
RESERVED_ANNOTATIONS: Final = frozenset({"summary", "description", "alert_id", "rule", "state"})
FIGURE_PREFIX: Final = "figure_"

_LABEL_NAME: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_NOT_LABEL_CHAR: Final = re.compile(r"[^a-zA-Z0-9_]")
_sanitizer: Final = MetadataSanitizer(max_length=1024)
#: ``service.name``, the resource attribute (``opentelemetry.semconv`` has it too).
SERVICE_NAME: Final = "service.name"


def _names(
    owner: str, kind: str, values: Mapping[str, str] | None, reserved: frozenset[str]
) -> dict[str, str]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{owner}: {kind} must be a mapping of strings to strings")
    checked: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            raise ConfigError(
                f"{owner}: invalid {kind[:-1]} name {name!r}; "
                "names must match [a-zA-Z_][a-zA-Z0-9_]*"
            )
        if name.startswith("__"):
            raise ConfigError(f"{owner}: {kind[:-1]} names starting with '__' are reserved")
        if name in reserved or (kind == "annotations" and name.startswith(FIGURE_PREFIX)):
            raise ConfigError(
                f"{owner}: the handler sets the {kind[:-1]} {name!r} itself; "
                f"choose another name (reserved: {', '.join(sorted(reserved))}"
                + (f", {FIGURE_PREFIX}*)" if kind == "annotations" else ")")
            )
        if not isinstance(value, str):
            raise ConfigError(f"{owner}: the value of {kind[:-1]} {name!r} must be a string")
        checked[name] = value
    return checked


def _rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(value: datetime) -> datetime:
    # Alerts carry aware datetimes; read a naive one as UTC rather than local time.
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _figure_text(value: AttributeValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return json.dumps(list(value), ensure_ascii=False)
    return json.dumps(value)


@dataclass(frozen=True, slots=True)
class _Entry:
    """What Alertmanager is told about one alert, minus ``endsAt``."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime

    def postable(self, ends_at: datetime, generator_url: str | None) -> dict[str, Any]:
        posted: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": _rfc3339(self.starts_at),
            # Alertmanager rejects an alert that ends before it starts.
            "endsAt": _rfc3339(max(ends_at, self.starts_at)),
        }
        if generator_url is not None:
            posted["generatorURL"] = generator_url
        return posted


class AlertmanagerAlertHandler:
    """Sends alerts to Prometheus Alertmanager (API v2) and keeps firing ones alive.

    Each notification is one ``POST {url}/api/v2/alerts`` of a JSON list of
    alerts shaped as Prometheus sends them:

    * ``labels`` (the alert's identity in Alertmanager, stable per
      collector and rule so that repeats deduplicate): ``alertname`` (the
      rule, e.g. ``consecutive_failures``), ``gecko_alert_rule`` (the rule
      again), ``gecko_collector_type``, ``severity`` (the alert level),
      ``service_name`` and the ``labels`` given here. The names are those of
      the metric series and of the Prometheus rules in ``collector-config/``,
      so Alertmanager groups and inhibits alerts from either source together;
    * ``annotations``: ``summary`` (the message), ``description`` (the
      message and its figures), ``alert_id``, ``rule``, ``state``, one
      ``figure_<key>`` per metadata figure (sanitised as for spans, the key
      turned into a valid name) and the ``annotations`` given here;
    * ``startsAt``: when the alert fired; ``generatorURL`` when given.

    While an alert fires (firing, repeat and escalated notifications) it is
    posted with ``endsAt`` four resend intervals ahead and kept in a
    registry; a daemon thread re-posts every registered alert every
    ``resend_interval`` seconds, pushing ``endsAt`` forward, so Alertmanager
    resolves it by itself if this process dies. A resolved notification is
    posted once with ``endsAt`` set to the resolution time and dropped from
    the registry. An escalation changes ``severity`` and with it the label
    set, so the alert under its previous label set is resolved in the same
    request. Alerts still firing when the handler closes are not resolved:
    they expire at their ``endsAt``, as with Prometheus.

    Failures: a POST made for a notification raises
    `AlertDeliveryError` (the
    dispatcher counts it; a firing alert stays registered, so the next
    re-send delivers it). A failed re-send is logged as a warning and tried
    again one interval later. Messages show the URL with its password
    masked; ``user:password@`` in the URL is sent as basic auth.

    Threading contract: called on the dispatcher thread; each call makes one
    POST and blocks for at most ``timeout`` plus the time a re-send in
    progress still needs (calls and re-sends are serialised, so Alertmanager
    sees them in order). Safe to call from several threads at once.
    `close` may be called from any thread. The re-send thread starts
    with the first firing alert, and again in a forked child.

    Args:
        url: Alertmanager's base address, e.g. ``http://127.0.0.1:9093`` or
            ``https://host/alertmanager`` behind a path prefix (as in
            Prometheus' ``alertmanagers`` config).
        labels: Extra labels on every alert (names must match
            ``[a-zA-Z_][a-zA-Z0-9_]*``; values are strings).
        annotations: Extra annotations on every alert (same naming rule).
        service: The ``service_name`` label; by default the ``service.name``
            of the global tracer provider's resource (what
            ``setup(service_name=...)`` or ``OTEL_SERVICE_NAME`` set).
        timeout: Seconds (or a ``timedelta``) each POST may take.
        resend_interval: Seconds between re-sends of firing alerts.
        generator_url: Sent as ``generatorURL`` (a link back to a dashboard).

    Raises:
        ConfigError: For a URL that is not http(s) or has a query, invalid or
            reserved label or annotation names, non-string values, an empty
            ``service``, or a non-positive ``timeout`` or ``resend_interval``.
    """

    def __init__(
        self,
        url: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        service: str | None = None,
        timeout: float | timedelta = 5.0,
        resend_interval: float | timedelta = 60.0,
        generator_url: str | None = None,
    ) -> None:
        owner = type(self).__name__
        self._endpoint = Endpoint.parse(_api_url(url, owner), owner)
        self._labels = _names(owner, "labels", labels, RESERVED_LABELS)
        self._annotations = _names(owner, "annotations", annotations, RESERVED_ANNOTATIONS)
        if service is not None and (not isinstance(service, str) or not service):
            raise ConfigError(f"{owner}: service must be a non-empty string, got {service!r}")
        self._service = service
        self._timeout = check_seconds(f"{owner}: timeout", timeout)
        self._interval = check_seconds(f"{owner}: resend_interval", resend_interval)
        if generator_url is not None:
            Endpoint.parse(generator_url, f"{owner}: generator_url")
        self._generator_url = generator_url
        self._opener = build_opener()

        self._lock = threading.Lock()  # guards the registry and orders the POSTs
        self._registry: dict[str, _Entry] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        at_fork_in_child(self, "_after_fork_in_child")

    @property
    def url(self) -> str:
        """The API endpoint alerts are posted to, with its password masked."""
        return self._endpoint.display

    @property
    def resend_interval(self) -> float:
        """Seconds between re-sends of firing alerts."""
        return self._interval

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._endpoint.display!r})"

    def __call__(self, alert: Alert, /) -> None:
        """Post ``alert``; raises `AlertDeliveryError` when Alertmanager did not take it."""
        if alert.notification is Notification.RESOLVED or alert.state is AlertState.RESOLVED:
            self._resolve(alert)
        else:
            self._fire(alert)

    def firing(self) -> list[str]:
        """Ids of the alerts being kept alive by re-sends."""
        with self._lock:
            return list(self._registry)

    def close(self) -> None:
        """Stop the re-send thread, waiting up to ``timeout + 1`` seconds for it.

        Alerts still firing are not resolved: they expire at their ``endsAt``.
        Later calls still post their notification, but nothing is re-sent
        any more. Idempotent; does not wait for a POST made by a call.
        """
        self._stop.set()
        thread = self._thread  # not under the lock: a call may hold it for a whole POST
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(self._timeout + 1.0)

    # -- internals -----------------------------------------------------------

    def _fire(self, alert: Alert) -> None:
        entry = self._entry(alert)
        with self._lock:
            previous = self._registry.get(alert.id)
            self._registry[alert.id] = entry
            self._ensure_thread()
            now = datetime.now(timezone.utc)
            payload = [entry.postable(now + self._horizon, self._generator_url)]
            if previous is not None and previous.labels != entry.labels:
                # Otherwise the old label set (e.g. the lower severity) would
                # fire on until its endsAt passes.
                payload.append(previous.postable(now, self._generator_url))
            self._post(payload, alert)

    def _resolve(self, alert: Alert) -> None:
        entry = self._entry(alert)
        ends_at = _utc(alert.resolved_at) if alert.resolved_at else datetime.now(timezone.utc)
        with self._lock:
            previous = self._registry.pop(alert.id, None)
            payload = [entry.postable(ends_at, self._generator_url)]
            if previous is not None and previous.labels != entry.labels:
                payload.append(previous.postable(ends_at, self._generator_url))
            self._post(payload, alert)

    @property
    def _horizon(self) -> timedelta:
        return timedelta(seconds=RESEND_HORIZON * self._interval)

    def _post(self, payload: list[dict[str, Any]], alert: Alert) -> None:
        """One POST, under the lock; raises AlertDeliveryError on failure."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        failure = post_json(self._opener, self._endpoint, body, {}, self._timeout)
        if failure is not None:
            raise AlertDeliveryError(
                f"alert {alert.id} ({alert.notification or alert.state}) could not be posted "
                f"to {self._endpoint.display}: {failure.reason}",
                status=failure.status,
            ) from failure.exc

    def _entry(self, alert: Alert) -> _Entry:
        labels = {
            **self._labels,
            "alertname": alert.rule,
            "gecko_alert_rule": alert.rule,
            "gecko_collector_type": alert.collector_type,
            "severity": alert.level.value,
            "service_name": self._service_name(),
        }
        message = _sanitizer.text(alert.message)
        figures = _sanitizer.sanitize(alert.metadata)
        annotations = {
            "summary": message,
            "description": "\n".join(
                [message, *(f"{key}: {_figure_text(value)}" for key, value in figures.items())]
            ),
            "alert_id": alert.id,
            "rule": alert.rule,
            "state": alert.state.value,
        }
        for key, value in figures.items():
            # Two keys can map to one name ("a.b", "a_b"); the first one keeps it.
            annotations.setdefault(
                FIGURE_PREFIX + _NOT_LABEL_CHAR.sub("_", key), _figure_text(value)
            )
        annotations.update(self._annotations)
        return _Entry(labels, annotations, _utc(alert.fired_at or alert.timestamp))

    def _service_name(self) -> str:
        if self._service is None:  # worked out once, at the first alert (after setup())
            self._service = _service_name()
        return self._service

    def _ensure_thread(self) -> None:
        """Start the re-send thread if it is not running (first alert, after a fork)."""
        if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(
            target=self._resend_loop, name="gecko-otel-alertmanager-resend", daemon=True
        )
        self._thread.start()

    def _resend_loop(self) -> None:
        while not self._stop.wait(self._interval):
            with guarded("AlertmanagerAlertHandler re-send"):  # the loop must outlive a bug
                self._resend()

    def _resend(self) -> None:
        with self._lock:
            if not self._registry:
                return
            now = datetime.now(timezone.utc)
            payload = [
                entry.postable(now + self._horizon, self._generator_url)
                for entry in self._registry.values()
            ]
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            failure = post_json(self._opener, self._endpoint, body, {}, self._timeout)
        if failure is not None:
            logger.warning(
                "re-sending %d firing alert(s) to %s failed (%s); next try in %gs",
                len(payload),
                self._endpoint.display,
                failure.reason,
                self._interval,
            )

    def _after_fork_in_child(self) -> None:
        # The lock may have been held by a thread that does not exist here.
        self._lock = threading.Lock()
        self._thread = None


def _service_name() -> str:
    """``service.name`` of the global tracer provider's resource, else the SDK's default."""
    resource = getattr(trace.get_tracer_provider(), "resource", None)
    name = resource.attributes.get(SERVICE_NAME) if resource is not None else None
    if not name:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - only without setup()

        name = Resource.create().attributes.get(SERVICE_NAME)
    return str(name or "unknown_service")


def _api_url(url: object, owner: str) -> str:
    """``{url}/api/v2/alerts`` from a base address, keeping any path prefix."""
    if not isinstance(url, str):
        raise ConfigError(f"{owner}: url must be a string, got {type(url).__name__}")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{owner}: invalid url {display_url(url)!r}: {exc}") from None
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{owner}: url is Alertmanager's base address and takes no query or fragment, "
            f"got {display_url(url)!r}"
        )
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + API_PATH))
