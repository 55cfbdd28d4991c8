"""``WebhookAlertHandler``: POST every notification as JSON to a URL.

Also holds the small HTTP layer the Alertmanager handler shares: one JSON
POST through :mod:`urllib.request` with a timeout, no redirects, credentials
from the URL's userinfo sent as HTTP basic auth and never shown in a log
line or an error message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.client import HTTPException
from typing import TYPE_CHECKING, Final

from gecko_otel.attributes import REDACTED, MetadataSanitizer
from gecko_otel.errors import ConfigError
from gecko_otel.version import __version__

if TYPE_CHECKING:
    from gecko_otel.alerts import Alert

__all__ = ["AlertDeliveryError", "WebhookAlertHandler"]

logger = logging.getLogger("gecko_otel.handlers.webhook")

USER_AGENT: Final = f"gecko-otel/{__version__}"
PAYLOAD_VERSION: Final = 1
#: Characters of an error response body quoted in an error message.
_BODY_EXCERPT: Final = 200
#: RFC 9110 token characters: what a header name may contain.
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class AlertDeliveryError(RuntimeError):
    """A handler could not deliver a notification.

    The message names the URL with any password masked and says why the
    last attempt failed; it never contains credentials or header values.

    Attributes:
        status: The HTTP status of the last response, ``None`` when there
            was none (connection refused, timeout, ...).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """A validated http(s) URL split into what we request and what we show."""

    url: str  #: the URL without userinfo: what urllib is given
    display: str  #: the URL with the password masked: what logs and errors show
    authorization: str | None  #: a basic-auth header value built from the userinfo

    @classmethod
    def parse(cls, url: object, owner: str) -> _Endpoint:
        if not isinstance(url, str):
            raise ConfigError(f"{owner}: url must be a string, got {type(url).__name__}")
        display = display_url(url)
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as exc:
            # Not quoted: masking cannot be trusted on a URL that does not parse.
            raise ConfigError(f"{owner}: invalid url: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{owner}: url must be an http:// or https:// URL with a host, got {display!r}"
            )
        if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
            raise ConfigError(
                f"{owner}: url must be printable ASCII without spaces (percent-encode the "
                f"rest, use the punycode host name), got {display!r}"
            )
        authorization = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            authorization = f"Basic {token}"
        bare = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        return cls(urllib.parse.urlunsplit(bare), display, authorization)


def display_url(url: str) -> str:
    """``url`` as it may be logged: the userinfo password masked.

    Uses :meth:`MetadataSanitizer.mask`; a userinfo without a password is
    usually a token (``https://TOKEN@host``) and is masked whole, and so is
    a userinfo the masking pattern cannot follow (a raw ``@`` in the password).
    """
    masked = MetadataSanitizer.mask(url)
    scheme, sep, rest = masked.partition("://")
    if not sep:
        return masked
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if not at:
        return masked
    user, colon, password = userinfo.partition(":")
    if not colon or "@" in user or password != REDACTED:
        userinfo = REDACTED
    return f"{scheme}://{userinfo}@{host}{rest[end:]}"


def _validate_headers(headers: Mapping[str, str] | None, owner: str) -> dict[str, str]:
    """Header names and values checked here, so no value ever reaches an error message."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigError(f"{owner}: headers must be a mapping of strings")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(f"{owner}: invalid header name {name!r}")
        # The value is a secret as often as not: name the header, never quote it.
        if not isinstance(value, str):
            raise ConfigError(f"{owner}: the value of header {name!r} must be a string")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ConfigError(f"{owner}: the value of header {name!r} contains a line break")
        checked[name] = value
    return checked


def _duration(owner: str, name: str, value: object, *, allow_zero: bool = False) -> float:
    """Seconds (a number or a ``timedelta``) as finite float seconds, > 0 or >= 0."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"{owner}: {name} must be seconds (a number) or a timedelta, got {value!r}"
        )
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"{owner}: {name} must be {bound} seconds, got {value!r}")
    return float(value)


def _opener() -> urllib.request.OpenerDirector:
    """An opener without a redirect handler: a 3xx is an error, never a re-sent POST.

    (urllib turns a redirected POST into a GET without a body.) Proxies come
    from the usual ``*_proxy`` environment variables, as for any urllib call.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    status: int | None
    retryable: bool
    exc: BaseException


def _post_json(
    opener: urllib.request.OpenerDirector,
    endpoint: _Endpoint,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> _Failure | None:
    """One POST of ``body``; ``None`` on a 2xx, else why it failed.

    Connection errors, timeouts, 5xx and 429 are retryable; other statuses
    are not. Responses are always read and closed.
    """
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if endpoint.authorization is not None:
        all_headers["Authorization"] = endpoint.authorization
    all_headers.update(headers)
    request = urllib.request.Request(endpoint.url, data=body, headers=all_headers, method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            excerpt = b""
            with contextlib.suppress(OSError, HTTPException):
                excerpt = exc.read(_BODY_EXCERPT)
        status = exc.code
        reason = f"HTTP {status} {exc.reason}"
        if 300 <= status < 400:
            reason += " (redirects are not followed)"
        text = excerpt.decode("utf-8", "replace").strip()
        if text:
            reason += f": {MetadataSanitizer.mask(text)}"
        return _Failure(reason, status, status >= 500 or status == 429, exc)
    except urllib.error.URLError as exc:
        return _Failure(f"{MetadataSanitizer.mask(str(exc.reason))}", None, True, exc)
    except (OSError, HTTPException) as exc:
        # Timeouts while reading, resets, a malformed status line: transient.
        reason = f"{type(exc).__name__}: {MetadataSanitizer.mask(str(exc))}".rstrip(": ")
        return _Failure(reason, None, True, exc)
    return None


class WebhookAlertHandler:
    """POSTs each notification as JSON, retrying transient failures.

    Payload (``Content-Type: application/json``)::

        {
          "version": 1,
          "alert": {
            "id": "32 hex digits, the same for every notification of the alert",
            "level": "info | warning | error | critical",
            "collector_type": "pool_collector",
            "rule": "consecutive_failures",
            "message": "what is wrong",
            "timestamp": "ISO 8601 with offset (when it fired)",
            "metadata": {"figure": "value", ...},
            "state": "firing | acknowledged | resolved",
            "acknowledged": false,
            "resolved": false,
            "fired_at": "ISO 8601 or null",
            "last_notified_at": "ISO 8601 or null",
            "acknowledged_at": "ISO 8601 or null",
            "resolved_at": "ISO 8601 or null",
            "suppressed": false,
            "inhibited": false,
            "notification": "firing | repeat | escalated | resolved",
            "notifications": 1
          }
        }

    ``alert`` is :meth:`Alert.to_dict() <gecko_otel.alerts.Alert.to_dict>`;
    ``version`` changes only if the envelope changes incompatibly. Headers
    sent: ``Content-Type``, ``User-Agent: gecko-otel/<version>``,
    ``Authorization: Basic ...`` when the URL has userinfo, then ``headers``
    (which win over the defaults).

    Any 2xx is success. Connection errors, timeouts, 5xx and 429 are retried
    up to ``retries`` times, sleeping ``backoff * 2**attempt`` seconds
    before retry ``attempt + 1`` (0.5, 1, 2 s by default); other statuses,
    redirects included, are not. When the last attempt fails the call raises
    :class:`AlertDeliveryError`, so the dispatcher counts the failure. Log
    lines and error messages show the URL with its password masked and
    never a header value.

    Threading contract: called on the dispatcher thread; blocks for up to
    ``(retries + 1) * timeout`` plus the backoff sleeps (23.5 s with the
    defaults), so keep that under ``MonitorConfig.handler_timeout`` or
    expect abandoned calls. Safe to call from several threads at once: it
    keeps no state between calls. :meth:`close` may be called from any
    thread; it cuts short backoff sleeps in progress.

    Args:
        url: An ``http://`` or ``https://`` URL; ``user:password@`` in it is
            sent as HTTP basic auth.
        headers: Extra request headers (for example an API key).
        timeout: Seconds (or a ``timedelta``) each attempt may take.
        retries: Extra attempts after the first one fails transiently.
        backoff: Seconds before the first retry, doubled for each next one.

    Raises:
        ConfigError: For a URL that is not http(s), an invalid header,
            ``timeout <= 0``, ``retries < 0`` or ``backoff < 0``.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | timedelta = 5.0,
        retries: int = 3,
        backoff: float | timedelta = 0.5,
    ) -> None:
        owner = type(self).__name__
        self._endpoint = _Endpoint.parse(url, owner)
        self._headers = _validate_headers(headers, owner)
        self._timeout = _duration(owner, "timeout", timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{owner}: retries must be an integer >= 0, got {retries!r}")
        self._retries = retries
        self._backoff = _duration(owner, "backoff", backoff, allow_zero=True)
        self._opener = _opener()
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """The URL with its password masked."""
        return self._endpoint.display

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._endpoint.display!r})"

    def __call__(self, alert: Alert, /) -> None:
        """Deliver ``alert``; raises :class:`AlertDeliveryError` when every attempt failed."""
        body = json.dumps(
            {"version": PAYLOAD_VERSION, "alert": alert.to_dict()},
            default=str,  # metadata is meant to be JSON-ready; don't fail on a stray value
            ensure_ascii=False,
        ).encode("utf-8")
        attempt = 0  # retries made so far
        while True:
            failure = _post_json(self._opener, self._endpoint, body, self._headers, self._timeout)
            if failure is None:
                return
            if not failure.retryable or attempt >= self._retries or self._closed.is_set():
                break
            delay = self._backoff * 2**attempt
            logger.warning(
                "alert %s to %s failed (%s); retry %d of %d in %.2fs",
                alert.id,
                self._endpoint.display,
                failure.reason,
                attempt + 1,
                self._retries,
                delay,
            )
            if self._closed.wait(delay):
                break
            attempt += 1
        raise AlertDeliveryError(
            f"alert {alert.id} could not be delivered to {self._endpoint.display} "
            f"after {attempt + 1} attempt(s): {failure.reason}",
            status=failure.status,
        ) from failure.exc

    def close(self) -> None:
        """Stop retrying: backoff sleeps in progress end and no further retry starts.

        A call in flight still raises if its current attempt fails; later
        calls make one attempt each.
        """
        self._closed.set()
