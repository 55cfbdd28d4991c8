"""The built-in alert handlers, against real peers.

The webhook handler posts to a real ``http.server`` on loopback; the
Alertmanager handler to a real ``prometheus-alertmanager`` process (marked
``integration``). Nothing on the HTTP path is mocked.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import sys
import textwrap
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from gecko_otel._capture.metadata import MetadataSanitizer
from gecko_otel._checks import seconds
from gecko_otel._config import MonitorConfig
from gecko_otel._values.alerts import Alert, AlertState, Notification
from gecko_otel._values.health import AlertLevel
from gecko_otel._version import __version__
from gecko_otel.errors import ConfigError
from gecko_otel.handlers import (
    AlertDeliveryError,
    AlertmanagerAlertHandler,
    LoggingAlertHandler,
    WebhookAlertHandler,
    available_alert_handlers,
    load_alert_handler,
)
from gecko_otel.handlers.webhook import display_url
from support import servers
from support.programs import run_program

SECRET = "hunter2"
POLL_TIMEOUT = 5.0

_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback peers must be reached directly whatever the CI's proxy settings."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


def make_alert(**overrides: Any) -> Alert:
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "level": AlertLevel.ERROR,
        "collector_type": f"collector_{uuid.uuid4().hex[:8]}",
        "rule": "consecutive_failures",
        "message": "5 consecutive failures",
        "timestamp": now,
        "fired_at": now,
        "last_notified_at": now,
        "metadata": {"consecutive_failures": 5, "last_error": "timeout"},
        "state": AlertState.FIRING,
        "notification": Notification.FIRING,
        "notifications": 1,
    }
    values.update(overrides)
    return Alert(**values)


def resolved(alert: Alert, at: datetime | None = None) -> Alert:
    at = at or datetime.now(timezone.utc)
    return Alert(
        **{
            **{name: getattr(alert, name) for name in Alert.__dataclass_fields__},
            "state": AlertState.RESOLVED,
            "resolved_at": at,
            "notification": Notification.RESOLVED,
        }
    )


def closed_port() -> int:
    return servers.free_port()


def wait_for(predicate: Callable[[], Any], timeout: float = POLL_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


# -- a recording HTTP server --------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  #: when the server read it

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """Records every POST; answers with the scripted statuses, then 200.

    A scripted status may come with response headers: ``(429, {"Retry-After": "0"})``.
    """

    url: str
    requests: list[Request] = field(default_factory=list)
    statuses: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    recording = RecordingServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with recording.lock:
                recording.requests.append(
                    Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                scripted = recording.statuses.pop(0) if recording.statuses else 200
            status, headers = scripted if isinstance(scripted, tuple) else (scripted, {})
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            for name, value in headers.items():
                self.send_header(name, value)
            reply = b"" if status < 400 else b"scripted failure"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    recording.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield recording
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# -- logging --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (AlertLevel.INFO, logging.INFO),
        (AlertLevel.WARNING, logging.WARNING),
        (AlertLevel.ERROR, logging.ERROR),
        (AlertLevel.CRITICAL, logging.CRITICAL),
    ],
)
def test_logging_handler_logs_at_the_alert_level(
    caplog: pytest.LogCaptureFixture, level: AlertLevel, expected: int
) -> None:
    alert = make_alert(level=level, collector_type="pool_collector")
    caplog.set_level(logging.DEBUG, logger="gecko_otel.alerts")
    LoggingAlertHandler()(alert)
    [record] = caplog.records
    assert record.name == "gecko_otel.alerts"
    assert record.levelno == expected
    assert "%s" in str(record.msg), "logged with %s-style arguments"
    assert record.getMessage() == (
        f"alert firing [{level.value}] collector=pool_collector rule=consecutive_failures: "
        f"5 consecutive failures (alert_id={alert.id})"
    )


def test_logging_handler_logs_resolved_at_info(caplog: pytest.LogCaptureFixture) -> None:
    alert = resolved(make_alert(level=AlertLevel.CRITICAL))
    caplog.set_level(logging.DEBUG, logger="gecko_otel.alerts")
    LoggingAlertHandler()(alert)
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("alert resolved [critical] ")
    assert alert.id in record.getMessage()


def test_logging_handler_with_own_logger_and_level_map(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="my.alerts")
    handler = LoggingAlertHandler("my.alerts", level_map={"warning": "ERROR", AlertLevel.INFO: 15})
    handler(make_alert(level=AlertLevel.WARNING, message=f"line one\nhttp://u:{SECRET}@db/x"))
    handler(make_alert(level=AlertLevel.INFO, notification=Notification.REPEAT))
    warning, info = caplog.records
    assert (warning.name, warning.levelno, info.levelno) == ("my.alerts", logging.ERROR, 15)
    assert "\n" not in warning.getMessage()
    assert "line one\\nhttp://u:[REDACTED]@db/x" in warning.getMessage()
    assert info.getMessage().startswith("alert repeat [info] ")


@pytest.mark.parametrize(
    "level_map", [{"fatal": logging.ERROR}, {"warning": "LOUD"}, {"warning": -1}]
)
def test_logging_handler_rejects_bad_level_map(level_map: Mapping[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LoggingAlertHandler(level_map=level_map)


# -- webhook --------------------------------------------------------------------


def test_webhook_posts_the_documented_payload(server: RecordingServer) -> None:
    alert = make_alert(metadata={"consecutive_failures": 5})
    WebhookAlertHandler(f"{server.url}/hook", headers={"X-Api-Key": "k-123"})(alert)
    [request] = server.requests
    assert request.path == "/hook"
    assert request.json() == {"version": 1, "alert": alert.to_dict()}
    assert request.json()["alert"]["notification"] == "firing"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"gecko-otel/{__version__}"
    assert request.headers["x-api-key"] == "k-123"
    assert "authorization" not in request.headers


def test_webhook_sends_url_userinfo_as_basic_auth(server: RecordingServer) -> None:
    url = server.url.replace("http://", f"http://user:{SECRET}@") + "/hook"
    handler = WebhookAlertHandler(url)
    handler(make_alert())
    [request] = server.requests
    expected = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert SECRET not in repr(handler) and SECRET not in handler.url


@pytest.mark.parametrize(
    ("statuses", "requests"), [([500], 2), ([503, 429], 3), ([502, 500, 504], 4)]
)
def test_webhook_retries_transient_failures(
    server: RecordingServer, statuses: list[int], requests: int
) -> None:
    server.statuses.extend(statuses)
    WebhookAlertHandler(f"{server.url}/hook", retries=3, backoff=0.001)(make_alert())
    assert len(server.requests) == requests
    assert server.statuses == []


def test_webhook_raises_after_the_last_retry(server: RecordingServer) -> None:
    server.statuses.extend([500, 500, 500, 200])
    handler = WebhookAlertHandler(f"{server.url}/hook", retries=2, backoff=0.001)
    with pytest.raises(AlertDeliveryError, match=r"after 3 attempt\(s\): HTTP 500") as info:
        handler(make_alert())
    assert info.value.status == 500
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_webhook_does_not_retry_other_statuses(server: RecordingServer, status: int) -> None:
    server.statuses.append(status)
    handler = WebhookAlertHandler(f"{server.url}/hook", retries=3, backoff=0.001)
    with pytest.raises(AlertDeliveryError, match=f"HTTP {status}") as info:
        handler(make_alert())
    assert info.value.status == status
    assert len(server.requests) == 1


def test_webhook_unreachable_raises_with_the_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://user:{SECRET}@127.0.0.1:{closed_port()}/hook"
    handler = WebhookAlertHandler(
        url, headers={"X-Token": "t0p-s3cret"}, retries=2, backoff=0.001, timeout=2
    )
    with pytest.raises(AlertDeliveryError) as info:
        handler(make_alert())
    message = str(info.value)
    assert MetadataSanitizer.mask(url) in message
    assert "after 3 attempt(s)" in message
    assert info.value.status is None
    retries = [r for r in caplog.records if r.name == "gecko_otel.handlers.webhook"]
    assert len(retries) == 2, "each retry is logged"
    assert MetadataSanitizer.mask(url) in caplog.text
    everything = caplog.text + "".join(traceback.format_exception(info.value))
    for secret in (SECRET, "t0p-s3cret"):
        assert secret not in everything


def test_webhook_close_cuts_a_backoff_short(server: RecordingServer) -> None:
    server.statuses.extend([500] * 5)
    handler = WebhookAlertHandler(f"{server.url}/hook", retries=3, backoff=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            handler(make_alert())
        except AlertDeliveryError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    started = time.monotonic()
    thread.start()
    assert wait_for(lambda: server.requests)
    handler.close()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert len(errors) == 1 and len(server.requests) == 1


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("ftp://example.com/hook",), {}),
        (("example.com/hook",), {}),
        (("http:///nohost",), {}),
        (("http://example.com:99999/",), {}),
        (("http://example.com/caf\u00e9",), {}),
        (("http://example.com/a b",), {}),
        (("http://example.com/hook",), {"timeout": 0}),
        (("http://example.com/hook",), {"retries": -1}),
        (("http://example.com/hook",), {"retries": 1.5}),
        (("http://example.com/hook",), {"backoff": -0.1}),
        (("http://example.com/hook",), {"max_retry_after": 0}),
        (("http://example.com/hook",), {"headers": {"Bad Name": "x"}}),
        (("http://example.com/hook",), {"headers": {"X-Token": "line\r\nbreak"}}),
    ],
)
def test_webhook_validates_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        WebhookAlertHandler(*args, **kwargs)
    assert "line\r\nbreak" not in str(info.value), "header values are never quoted"


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (WebhookAlertHandler, {"timeout": 0}, "WebhookAlertHandler: timeout must be positive"),
        (WebhookAlertHandler, {"timeout": "5s"}, "timeout must be seconds (a number) or a time"),
        (WebhookAlertHandler, {"backoff": -0.1}, "WebhookAlertHandler: backoff must be 0 or more"),
        (WebhookAlertHandler, {"max_retry_after": 0}, "max_retry_after must be positive"),
        (AlertmanagerAlertHandler, {"resend_interval": -1}, "resend_interval must be positive"),
        (AlertmanagerAlertHandler, {"timeout": float("inf")}, "timeout must be positive"),
    ],
)
def test_duration_messages_name_the_argument(
    factory: Callable[..., Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        factory("http://127.0.0.1:9093", **kwargs)
    assert message in str(info.value)


def test_webhook_accepts_zero_backoff(server: RecordingServer) -> None:
    server.statuses.append(500)
    WebhookAlertHandler(f"{server.url}/hook", retries=1, backoff=0)(make_alert())
    assert len(server.requests) == 2


def test_webhook_worst_case_with_the_defaults_fits_the_handler_timeout() -> None:
    defaults = {
        name: p.default for name, p in inspect.signature(WebhookAlertHandler).parameters.items()
    }
    assert (defaults["timeout"], defaults["retries"], defaults["backoff"]) == (5.0, 2, 0.5)
    attempts = defaults["retries"] + 1
    worst = attempts * defaults["timeout"] + defaults["backoff"] * (2 ** defaults["retries"] - 1)
    assert worst == 16.5
    assert worst < seconds(MonitorConfig().handler_timeout)


@pytest.mark.parametrize("status", [429, 503])
def test_webhook_honours_retry_after_seconds(server: RecordingServer, status: int) -> None:
    # With a 30 s backoff only Retry-After: 0 can make the retry come at once.
    server.statuses.append((status, {"Retry-After": "0"}))
    handler = WebhookAlertHandler(f"{server.url}/hook", retries=1, backoff=30)
    started = time.monotonic()
    handler(make_alert())
    assert time.monotonic() - started < 1
    assert len(server.requests) == 2, "delivered by the one retry"


def test_webhook_caps_retry_after(server: RecordingServer) -> None:
    server.statuses.append((429, {"Retry-After": "3600"}))
    handler = WebhookAlertHandler(f"{server.url}/hook", retries=1, backoff=30, max_retry_after=0.2)
    handler(make_alert())
    first, second = server.requests
    assert 0.2 <= second.at - first.at < 0.9


def test_webhook_retry_after_never_outlasts_the_worst_case(server: RecordingServer) -> None:
    # Worst case: 2 attempts x 0.3 s, no backoff. The 429 comes back at
    # once, so 0.3 s is left for the wait after keeping 0.3 s for the retry.
    server.statuses.append((503, {"Retry-After": "3600"}))
    handler = WebhookAlertHandler(f"{server.url}/hook", timeout=0.3, retries=1, backoff=0)
    started = time.monotonic()  # the wait is kept from the call's start, not the first reply's
    handler(make_alert())
    _, second = server.requests
    assert 0.25 <= second.at - started < 0.9


@pytest.mark.parametrize(
    "reply",
    [
        (429, {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}),  # HTTP-date form
        (500, {"Retry-After": "3600"}),  # only 429 and 503 are read
        (429, {"Retry-After": "-1"}),
        (429, {"Retry-After": "1e3"}),
    ],
)
def test_webhook_falls_back_to_the_backoff(
    server: RecordingServer, reply: tuple[int, dict[str, str]]
) -> None:
    server.statuses.append(reply)
    handler = WebhookAlertHandler(f"{server.url}/hook", retries=1, backoff=0.001)
    started = time.monotonic()
    handler(make_alert())
    assert time.monotonic() - started < 1
    assert len(server.requests) == 2


def test_alert_delivery_error_is_importable_from_its_old_homes() -> None:
    from gecko_otel import errors, handlers
    from gecko_otel.handlers import webhook

    assert handlers.AlertDeliveryError is webhook.AlertDeliveryError is errors.AlertDeliveryError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://user:{SECRET}@host/x", "http://user:[REDACTED]@host/x"),
        (f"https://{SECRET}@host:8443", "https://[REDACTED]@host:8443"),
        (f"http://user:p@{SECRET}@host/x", "http://[REDACTED]@host/x"),
        ("http://host/x?to=a@b", "http://host/x?to=[REDACTED]"),  # query values: masked
        ("http://host/x", "http://host/x"),
    ],
)
def test_display_url_masks_credentials(url: str, shown: str) -> None:
    assert display_url(url) == shown


# -- load_alert_handler ---------------------------------------------------------


def test_load_alert_handler_builds_the_builtins() -> None:
    assert isinstance(load_alert_handler("logging"), LoggingAlertHandler)
    webhook = load_alert_handler("webhook", url="http://127.0.0.1:1/hook", retries=0)
    assert isinstance(webhook, WebhookAlertHandler)
    am = load_alert_handler("alertmanager", url="http://127.0.0.1:9093")
    assert isinstance(am, AlertmanagerAlertHandler)
    am.close()


def test_load_alert_handler_names_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"'nope'; available: alertmanager, logging, webhook"):
        load_alert_handler("nope")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'uri'"):
        load_alert_handler("webhook", uri="http://example.com")


def test_builtin_entry_points_point_at_the_builtins() -> None:
    ours = {
        ep.name: ep.value
        for ep in entry_points(group="gecko_otel.alert_handlers")
        if ep.dist is not None and ep.dist.name == "gecko-otel"
    }
    if not ours:
        pytest.skip("gecko-otel's metadata has no gecko_otel.alert_handlers entry points yet")
    assert ours == {
        "alertmanager": "gecko_otel.handlers.alertmanager:AlertmanagerAlertHandler",
        "logging": "gecko_otel.handlers.logging:LoggingAlertHandler",
        "webhook": "gecko_otel.handlers.webhook:WebhookAlertHandler",
    }


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution (a dist-info on sys.path) registering two handlers."""
    module = f"gecko_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            def make(greeting="hello"):
                def handler(alert):
                    return (greeting, alert.id)
                return handler
            """
        )
    )
    dist_info = tmp_path / "gecko_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: gecko-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[gecko_otel.alert_handlers]\ngreeter = {module}:make\nbroken = {module}_missing:make\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_load_alert_handler_finds_entry_points_of_other_packages(plugin_dist: str) -> None:
    assert available_alert_handlers() == [
        "alertmanager",
        "broken",
        "greeter",
        "logging",
        "webhook",
    ]
    handler = load_alert_handler("greeter", greeting="hi")
    alert = make_alert()
    assert handler(alert) == ("hi", alert.id)
    with pytest.raises(ConfigError, match=r"'broken' \(.*_missing:make\) could not be loaded"):
        load_alert_handler("broken")


# -- Alertmanager: payload shape against the recording server --------------------


def test_alertmanager_posts_v2_alerts_under_the_path_prefix(server: RecordingServer) -> None:
    handler = AlertmanagerAlertHandler(
        f"{server.url}/am/", generator_url="https://grafana.example/d/1", resend_interval=60
    )
    try:
        alert = make_alert(metadata={"stats": {"p95 latency": 1.5}, "tags": ["a", "b"]})
        handler(alert)
    finally:
        handler.close()
    [request] = server.requests
    assert request.path == "/am/api/v2/alerts"
    assert request.headers["content-type"] == "application/json"
    [posted] = request.json()
    assert set(posted) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert posted["generatorURL"] == "https://grafana.example/d/1"
    assert posted["startsAt"] == rfc3339(alert.fired_at)
    assert posted["annotations"]["figure_stats_p95_latency"] == "1.5"
    assert posted["annotations"]["figure_tags"] == '["a", "b"]'
    assert posted["annotations"]["description"] == (
        '5 consecutive failures\nstats.p95 latency: 1.5\ntags: ["a", "b"]'
    )
    assert "alert_id" not in posted["labels"]


def test_alertmanager_handler_raises_when_the_post_fails(server: RecordingServer) -> None:
    server.statuses.append(500)
    handler = AlertmanagerAlertHandler(server.url, resend_interval=60)
    try:
        with pytest.raises(AlertDeliveryError, match="HTTP 500") as info:
            handler(make_alert())
    finally:
        handler.close()
    assert info.value.status == 500
    assert len(server.requests) == 1, "one POST per notification, no retry in the call"


def test_alertmanager_resend_failures_are_logged_with_the_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://user:{SECRET}@127.0.0.1:{closed_port()}"
    handler = AlertmanagerAlertHandler(url, resend_interval=0.05, timeout=1)
    try:
        alert = make_alert()
        with pytest.raises(AlertDeliveryError) as info:
            handler(alert)
        assert handler.firing() == [alert.id], "kept for the re-send thread to deliver"
        assert wait_for(lambda: len(resend_warnings(caplog)) >= 2)
    finally:
        handler.close()
    masked = MetadataSanitizer.mask(url) + "/api/v2/alerts"
    assert masked in str(info.value)
    assert all(masked in r.getMessage() for r in resend_warnings(caplog))
    assert SECRET not in caplog.text + "".join(traceback.format_exception(info.value))
    assert not any(t.name == "gecko-otel-alertmanager-resend" for t in threading.enumerate())


def resend_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "gecko_otel.handlers.alertmanager" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": {"bad-name": "x"}},
        {"labels": {"1st": "x"}},
        {"labels": {"__reserved": "x"}},
        {"labels": {"alertname": "x"}},
        {"labels": {"severity": "x"}},
        {"labels": {"team": 1}},
        {"annotations": {"bad.name": "x"}},
        {"annotations": {"summary": "x"}},
        {"annotations": {"figure_x": "x"}},
        {"url": "ftp://127.0.0.1:9093"},
        {"url": "http://127.0.0.1:9093/?x=1"},
        {"service": ""},
        {"timeout": 0},
        {"resend_interval": -1},
        {"generator_url": "javascript:alert(1)"},
    ],
)
def test_alertmanager_handler_validates_arguments(kwargs: dict[str, Any]) -> None:
    kwargs = {"url": "http://127.0.0.1:9093", **kwargs}
    with pytest.raises(ConfigError):
        AlertmanagerAlertHandler(**kwargs)


# -- Alertmanager: a real process ----------------------------------------------


def rfc3339(value: datetime | None) -> str:
    assert value is not None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager on loopback, without clustering; yields its base URL."""
    workdir = tmp_path_factory.mktemp("alertmanager")
    config = workdir / "alertmanager.yml"
    config.write_text(
        textwrap.dedent(
            """
            route:
              receiver: "null"
              group_wait: 0s
            receivers:
              - name: "null"
            """
        )
    )
    with servers.alertmanager(config, workdir) as base:
        yield base


def am_alerts(base: str, query: str = "") -> list[dict[str, Any]]:
    with _direct.open(f"{base}/api/v2/alerts{query}", timeout=5) as response:
        alerts: list[dict[str, Any]] = json.loads(response.read())
    return alerts


def am_alerts_of(base: str, alert: Alert, query: str = "") -> list[dict[str, Any]]:
    return [a for a in am_alerts(base, query) if a["annotations"].get("alert_id") == alert.id]


@pytest.fixture
def am_handler(alertmanager: str) -> Iterator[Callable[..., AlertmanagerAlertHandler]]:
    handlers: list[AlertmanagerAlertHandler] = []

    def make(**kwargs: Any) -> AlertmanagerAlertHandler:
        handler = AlertmanagerAlertHandler(alertmanager, **kwargs)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        handler.close()


@pytest.mark.integration
def test_firing_alert_is_active_in_alertmanager(
    alertmanager: str, am_handler: Callable[..., AlertmanagerAlertHandler]
) -> None:
    handler = am_handler(
        labels={"team": "data"}, annotations={"runbook_url": "https://rb/1"}, service="p6"
    )
    fired = datetime.now(timezone.utc) - timedelta(minutes=2)
    alert = make_alert(level=AlertLevel.CRITICAL, fired_at=fired, timestamp=fired)
    handler(alert)
    [shown] = wait_for(
        lambda: [a for a in am_alerts_of(alertmanager, alert) if a["status"]["state"] == "active"]
    )
    assert shown["labels"] == {
        "alertname": "consecutive_failures",
        "gecko_alert_rule": "consecutive_failures",
        "gecko_collector_type": alert.collector_type,
        "severity": "critical",
        "service_name": "p6",
        "team": "data",
    }
    assert shown["annotations"] == {
        "summary": "5 consecutive failures",
        "description": "5 consecutive failures\nconsecutive_failures: 5\nlast_error: timeout",
        "alert_id": alert.id,
        "rule": "consecutive_failures",
        "state": "firing",
        "figure_consecutive_failures": "5",
        "figure_last_error": "timeout",
        "runbook_url": "https://rb/1",
    }
    assert shown["startsAt"] == rfc3339(alert.fired_at)
    # endsAt is four resend intervals (4 x 60 s) ahead, so Alertmanager
    # resolves the alert by itself if we stop re-sending.
    ahead = parse_time(shown["endsAt"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=3) < ahead <= timedelta(minutes=4)


@pytest.mark.integration
def test_alerts_are_labelled_with_the_service_name_setup_gave(alertmanager: str) -> None:
    # Prometheus' series carry service_name (through the Collector); so must our alerts.
    out = run_program(
        f"""
        import json, gecko_otel
        from gecko_otel.handlers import AlertmanagerAlertHandler
        handler = AlertmanagerAlertHandler({alertmanager!r})
        monitor = gecko_otel.setup(service_name="p6", alert_handlers=[handler])

        @gecko_otel.collection("p6_collector")
        def fails():
            raise RuntimeError("down")

        for _ in range(3):
            try:
                fails()
            except RuntimeError:
                pass
        monitor.force_flush()
        print(json.dumps({{"ok": True}}))
        """
    )
    assert out == {"ok": True}
    [shown] = wait_for(
        lambda: [
            a
            for a in am_alerts(alertmanager)
            if a["labels"].get("gecko_collector_type") == "p6_collector"
        ]
    )
    assert shown["labels"]["service_name"] == "p6"
    assert shown["labels"]["gecko_alert_rule"] == shown["labels"]["alertname"]


def test_without_setup_the_service_name_comes_from_the_environment() -> None:
    out = run_program(
        """
        import json
        from datetime import datetime, timezone
        from gecko_otel import Alert, AlertLevel
        from gecko_otel.handlers import AlertmanagerAlertHandler

        alert = Alert(id="a1", level=AlertLevel.WARNING, collector_type="pools",
                      rule="stale", message="m", timestamp=datetime.now(timezone.utc))
        handler = AlertmanagerAlertHandler("http://127.0.0.1:9")
        print(json.dumps(handler._entry(alert).labels))
        """,
        env={"OTEL_SERVICE_NAME": "from-env"},
    )
    assert out["service_name"] == "from-env"


@pytest.mark.integration
def test_resend_thread_keeps_pushing_ends_at_forward(
    alertmanager: str, am_handler: Callable[..., AlertmanagerAlertHandler]
) -> None:
    handler = am_handler(resend_interval=0.2)
    alert = make_alert(collector_type="resend_collector")
    handler(alert)
    [first] = wait_for(lambda: am_alerts_of(alertmanager, alert))
    first_end = parse_time(first["endsAt"])
    # Two re-sends later endsAt has moved at least one interval further.
    later = wait_for(
        lambda: [
            a
            for a in am_alerts_of(alertmanager, alert)
            if parse_time(a["endsAt"]) >= first_end + timedelta(seconds=0.3)
        ],
        timeout=3,
    )
    assert later, f"endsAt stayed at {first['endsAt']}"
    assert later[0]["status"]["state"] == "active"
    assert handler.firing() == [alert.id]


@pytest.mark.integration
def test_resolved_alert_is_no_longer_listed(
    alertmanager: str, am_handler: Callable[..., AlertmanagerAlertHandler]
) -> None:
    # A long resend interval: only an endsAt in the past can make it go away.
    handler = am_handler(resend_interval=60)
    alert = make_alert()
    handler(alert)
    assert wait_for(lambda: am_alerts_of(alertmanager, alert))
    handler(resolved(alert))
    assert handler.firing() == [], "no longer re-sent"
    # Alertmanager 0.25's v2 API leaves out alerts whose endsAt has passed,
    # whatever the filters: a resolved alert is simply gone.
    assert wait_for(lambda: not am_alerts_of(alertmanager, alert), timeout=2)
    assert am_alerts_of(alertmanager, alert, "?active=true&silenced=true&unprocessed=true") == []


@pytest.mark.integration
def test_escalation_replaces_the_lower_severity(
    alertmanager: str, am_handler: Callable[..., AlertmanagerAlertHandler]
) -> None:
    handler = am_handler()
    alert = make_alert(level=AlertLevel.WARNING)
    handler(alert)
    assert wait_for(lambda: am_alerts_of(alertmanager, alert))
    escalated = Alert(
        **{
            **{name: getattr(alert, name) for name in Alert.__dataclass_fields__},
            "level": AlertLevel.CRITICAL,
            "notification": Notification.ESCALATED,
        }
    )
    handler(escalated)
    shown = wait_for(
        lambda: (
            found
            if len(found := am_alerts_of(alertmanager, alert)) == 1
            and found[0]["labels"]["severity"] == "critical"
            else None
        )
    )
    assert shown, am_alerts_of(alertmanager, alert)
