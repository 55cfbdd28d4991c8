"""Guarantee: secrets in webhook and database URLs never reach logs, repr or exports.

Slack-style webhook paths (``/services/T.../B.../XXXX``) and query tokens
(``?token=``) used to appear in full in warning logs, ``repr(handler)`` and
``.url``; a PostgreSQL ``?password=`` appeared in ``export()["store"]["url"]``.
"""

from __future__ import annotations

import logging
import socket
import traceback
from datetime import datetime, timezone

import pytest

from gecko_otel import Alert, AlertLevel
from gecko_otel.errors import AlertDeliveryError
from gecko_otel.handlers import WebhookAlertHandler
from gecko_otel.store.engine import safe_url
from support.store_helpers import stored_monitor

SLACK_PATH = "/services/T0AB12CD3/B0EF45GH6/xYz123SeCrEtTokenValue789"
SECRETS = ("T0AB12CD3", "B0EF45GH6", "xYz123SeCrEtTokenValue789", "q-s3cret-token", "p4ss")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alert() -> Alert:
    return Alert(
        id="a1",
        level=AlertLevel.ERROR,
        collector_type="pools",
        rule="consecutive_failures",
        message="3 failed runs",
        timestamp=datetime.now(timezone.utc),
    )


@pytest.mark.parametrize(
    "tail",
    [SLACK_PATH, "/hook?token=q-s3cret-token&channel=ops", "/hook#q-s3cret-token"],
    ids=["path", "query", "fragment"],
)
def test_webhook_secrets_are_masked_everywhere(tail: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://user:p4ss@127.0.0.1:{closed_port()}{tail}"
    handler = WebhookAlertHandler(url, retries=1, backoff=0.001, timeout=2)
    with pytest.raises(AlertDeliveryError) as info:
        handler(alert())
    shown = " ".join(
        [
            handler.url,
            repr(handler),
            str(info.value),
            caplog.text,
            "".join(traceback.format_exception(info.value)),
        ]
    )
    assert "127.0.0.1" in shown  # still says where it went
    for secret in SECRETS:
        assert secret not in shown


def test_an_ordinary_endpoint_stays_readable() -> None:
    handler = WebhookAlertHandler("http://127.0.0.1:9093/api/v2/alerts")
    assert handler.url == "http://127.0.0.1:9093/api/v2/alerts"


def test_database_url_query_passwords_are_masked() -> None:
    from sqlalchemy.engine import make_url

    url = make_url(
        "postgresql+psycopg://u:p4ss@db/x?password=p4ss&sslpassword=p4ss&sslmode=require"
    )
    shown = safe_url(url)
    assert "p4ss" not in shown
    assert "sslmode=require" in shown


def test_the_stores_export_shows_no_password(postgres_url: str) -> None:
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}password=p4ss"
    with stored_monitor(url) as sm:
        exported = sm.monitor.export()
        assert "p4ss" not in str(exported)
        assert "p4ss" not in exported["store"]["url"]
