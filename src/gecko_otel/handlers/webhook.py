"""``WebhookAlertHandler``: POST every notification as JSON to a URL.

The HTTP plumbing (URL checks, the POST itself, masking) lives in
`gecko_otel.handlers._http`, shared with the Alertmanager handler; this
module adds the payload and the retry policy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from gecko_otel._checks import check_seconds
from gecko_otel.errors import AlertDeliveryError, ConfigError
from gecko_otel.handlers._http import (
    Endpoint,
    Failure,
    build_opener,
    display_url,
    post_json,
    validate_headers,
)

if TYPE_CHECKING:
    from gecko_otel._values.alerts import Alert

# AlertDeliveryError and display_url lived here before; re-exported so imports keep working.
__all__ = ["AlertDeliveryError", "WebhookAlertHandler", "display_url"]

logger = logging.getLogger("gecko_otel.handlers.webhook")

PAYLOAD_VERSION: Final = 1


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

    ``alert`` is `Alert.to_dict() <gecko_otel._values.alerts.Alert.to_dict>`;
    ``version`` changes only if the envelope changes incompatibly. Headers
    sent: ``Content-Type``, ``User-Agent: gecko-otel/<version>``,
    ``Authorization: Basic ...`` when the URL has userinfo, then ``headers``
    (which win over the defaults).

    Any 2xx is success. Connection errors, timeouts, 5xx and 429 are retried
    up to ``retries`` times, sleeping ``backoff * 2**attempt`` seconds
    before retry ``attempt + 1`` (0.5 s, then 1 s by default); other
    statuses, redirects included, are not. A 429 or 503 with
    ``Retry-After: <seconds>`` waits that long instead, at most
    ``max_retry_after`` seconds and never past the worst case below (an
    HTTP-date ``Retry-After`` is ignored and the backoff used). When the
    last attempt fails the call raises `AlertDeliveryError`, so the
    dispatcher counts the failure. Log lines and error messages show the
    URL with its password masked and never a header value.

    Worst case, a call takes every attempt's ``timeout`` plus the backoff
    waits: ``(retries + 1) * timeout + backoff * (2**retries - 1)`` seconds,
    16.5 s with the defaults (3 x 5 s + 0.5 s + 1 s). That must stay under
    `MonitorConfig.handler_timeout <gecko_otel._config.MonitorConfig.handler_timeout>`
    (30 s by default), or the dispatcher abandons calls still retrying and
    counts them; raise ``handler_timeout`` before raising ``timeout``,
    ``retries`` or ``backoff``. (``timeout`` bounds each blocking socket
    operation, so a peer that trickles its response slowly can stretch an
    attempt.)

    Threading contract: called on the dispatcher thread; blocks for up to
    the worst case above. Safe to call from several threads at once: it
    keeps no state between calls. `close` may be called from any
    thread; it cuts short retry waits in progress.

    Args:
        url: An ``http://`` or ``https://`` URL; ``user:password@`` in it is
            sent as HTTP basic auth.
        headers: Extra request headers (for example an API key).
        timeout: Seconds (or a ``timedelta``) each attempt may take.
        retries: Extra attempts after the first one fails transiently.
        backoff: Seconds before the first retry, doubled for each next one;
            0 retries at once.
        max_retry_after: The longest wait a ``Retry-After`` header can ask
            for, in seconds (or a ``timedelta``).

    Raises:
        ConfigError: For a URL that is not http(s), an invalid header,
            ``timeout <= 0``, ``retries < 0``, ``backoff < 0`` or
            ``max_retry_after <= 0``.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | timedelta = 5.0,
        retries: int = 2,
        backoff: float | timedelta = 0.5,
        max_retry_after: float | timedelta = 30.0,
    ) -> None:
        owner = type(self).__name__
        self._endpoint = Endpoint.parse(url, owner)
        self._headers = validate_headers(headers, owner)
        self._timeout = check_seconds(f"{owner}: timeout", timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{owner}: retries must be an integer >= 0, got {retries!r}")
        self._retries = retries
        self._backoff = check_seconds(f"{owner}: backoff", backoff, allow_zero=True)
        self._max_retry_after = check_seconds(f"{owner}: max_retry_after", max_retry_after)
        self._opener = build_opener()
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """The URL with its password masked."""
        return self._endpoint.display

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._endpoint.display!r})"

    def __call__(self, alert: Alert, /) -> None:
        """Deliver ``alert``; raises `AlertDeliveryError` when every attempt failed."""
        body = json.dumps(
            {"version": PAYLOAD_VERSION, "alert": alert.to_dict()},
            default=str,  # metadata is meant to be JSON-ready; don't fail on a stray value
            ensure_ascii=False,
        ).encode("utf-8")
        deadline = time.monotonic() + self._worst_case(0)
        attempt = 0  # retries made so far
        while True:
            failure = post_json(self._opener, self._endpoint, body, self._headers, self._timeout)
            if failure is None:
                return
            if not failure.retryable or attempt >= self._retries or self._closed.is_set():
                break
            delay = self._delay(attempt, failure, deadline)
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
        """Stop retrying: retry waits in progress end and no further retry starts.

        A call in flight still raises if its current attempt fails; later
        calls make one attempt each.
        """
        self._closed.set()

    # -- internals -----------------------------------------------------------

    def _worst_case(self, waits_done: int) -> float:
        """Seconds the rest of a call may take once ``waits_done`` retry waits are over.

        The attempts still to make at ``timeout`` each, plus the backoff
        waits between them; ``_worst_case(0)`` is the whole call.
        """
        attempts = self._retries + 1 - waits_done
        waits = sum(self._backoff * 2.0**i for i in range(waits_done, self._retries))
        return attempts * self._timeout + waits

    def _delay(self, attempt: int, failure: Failure, deadline: float) -> float:
        """Seconds to wait before retry ``attempt + 1``."""
        if failure.retry_after is None:
            return self._backoff * 2.0**attempt
        # The server's word replaces our backoff, but may not make the call
        # outlast its documented worst case: keep back the time the attempts
        # still to come (and their own backoff waits) may need.
        room = deadline - time.monotonic() - self._worst_case(attempt + 1)
        return max(0.0, min(failure.retry_after, self._max_retry_after, room))
