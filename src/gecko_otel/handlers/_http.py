"""The small HTTP layer the webhook and Alertmanager handlers share.

One JSON POST through `urllib.request` with a timeout, no redirects,
credentials from the URL's userinfo sent as HTTP basic auth and never shown
in a log line or an error message. Nothing here retries: that is each
handler's policy.
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Final

from gecko_otel._capture.metadata import REDACTED, MetadataSanitizer
from gecko_otel._version import __version__
from gecko_otel.errors import ConfigError

__all__ = [
    "USER_AGENT",
    "Endpoint",
    "Failure",
    "build_opener",
    "display_url",
    "post_json",
    "validate_headers",
]

USER_AGENT: Final = f"gecko-otel/{__version__}"
#: Characters of an error response body quoted in an error message.
_BODY_EXCERPT: Final = 200
#: RFC 9110 token characters: what a header name may contain.
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Statuses whose ``Retry-After`` is read (RFC 9110 section 10.2.3, RFC 6585).
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
#: More digits than this in ``Retry-After`` is "longer than any cap".
_RETRY_AFTER_DIGITS: Final = 15


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A validated http(s) URL split into what we request and what we show."""

    url: str  #: the URL without userinfo: what urllib is given
    display: str  #: the URL with the password masked: what logs and errors show
    authorization: str | None  #: a basic-auth header value built from the userinfo

    @classmethod
    def parse(cls, url: object, owner: str) -> Endpoint:
        """Check ``url``; ``owner`` starts every `ConfigError` message."""
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
    """``url`` as it may be logged, in ``repr()`` or ``.url``: its secrets masked.

    The userinfo password (a userinfo without one is usually a token,
    ``https://TOKEN@host``, and is masked whole, as is one the pattern cannot
    follow); every query value (``?token=...``, ``?sig=...``); the fragment;
    and path segments that look like secrets (Slack's
    ``/services/T.../B.../XXXX``, Discord's ``/webhooks/ID/TOKEN``): any
    segment of 16 characters or more, or of 8 or more with a digit.
    """
    masked = MetadataSanitizer.mask(url)
    scheme, sep, rest = masked.partition("://")
    if not sep:
        return masked
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if not colon or "@" in user or password != REDACTED:
            userinfo = REDACTED
        authority = f"{userinfo}@{host}"
    return f"{scheme}://{authority}{_masked_tail(tail)}"


def _masked_tail(tail: str) -> str:
    path, _, fragment = tail.partition("#")
    path, question, query = path.partition("?")
    segments = [REDACTED if _secret_like(seg) else seg for seg in path.split("/")]
    out = "/".join(segments)
    if question:
        pairs = [pair.partition("=") for pair in query.split("&")]
        out += "?" + "&".join(f"{k}={REDACTED}" if eq else k for k, eq, _ in pairs)
    if fragment:
        out += "#" + REDACTED
    return out


def _secret_like(segment: str) -> bool:
    return len(segment) >= 16 or (len(segment) >= 8 and any(ch.isdigit() for ch in segment))


def validate_headers(headers: Mapping[str, str] | None, owner: str) -> dict[str, str]:
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


def build_opener() -> urllib.request.OpenerDirector:
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
class Failure:
    """Why one POST failed."""

    reason: str  #: for messages: status, reason and a masked body excerpt, or the error
    status: int | None  #: the HTTP status, ``None`` when there was no response
    retryable: bool  #: a transient failure: connection error, timeout, 5xx or 429
    exc: BaseException  #: the cause, for ``raise ... from``
    #: Seconds the server asked us to wait (``Retry-After`` on a 429 or 503,
    #: seconds form only); ``None`` when it did not say.
    retry_after: float | None = None


def post_json(
    opener: urllib.request.OpenerDirector,
    endpoint: Endpoint,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
) -> Failure | None:
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
        retry_after = None
        if status in _RETRY_AFTER_STATUSES and exc.headers is not None:
            retry_after = _retry_after_seconds(exc.headers.get("Retry-After"))
        return Failure(reason, status, status >= 500 or status == 429, exc, retry_after)
    except urllib.error.URLError as exc:
        return Failure(f"{MetadataSanitizer.mask(str(exc.reason))}", None, True, exc)
    except (OSError, HTTPException) as exc:
        # Timeouts while reading, resets, a malformed status line: transient.
        reason = f"{type(exc).__name__}: {MetadataSanitizer.mask(str(exc))}".rstrip(": ")
        return Failure(reason, None, True, exc)
    return None


def _retry_after_seconds(value: str | None) -> float | None:
    """The ``delay-seconds`` form of ``Retry-After``; ``None`` for an HTTP-date or junk.

    An HTTP-date would need the server's clock to agree with ours; callers
    fall back to their own backoff instead.
    """
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    # int() of thousands of digits raises; anything this long is beyond any cap anyway.
    return float(text) if len(text) <= _RETRY_AFTER_DIGITS else math.inf
