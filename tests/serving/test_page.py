"""The status page in a real headless Chromium: loads clean, updates itself, shows data as text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gecko_otel import Monitor
from gecko_otel.serving import MonitorSource, StatusServer
from support.browser import browser
from support.status import HOSTILE, HOSTILE_TEXT, populate, run
from support.store_helpers import stored_monitor

pytestmark = pytest.mark.integration
ROWS = "#collectors tbody tr"
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def live() -> Iterator[tuple[Monitor, StatusServer]]:
    """A Monitor serving its page, which polls every 0.3 s (the default is 5 s)."""
    with stored_monitor(None) as stored:
        run(stored.monitor, "pools")
        with StatusServer(MonitorSource(stored.monitor), port=0, refresh_seconds=0.3) as server:
            yield stored.monitor, server


def _runs_shown(page, collector: str) -> int:
    return page.evaluate(
        """name => {
            for (const row of document.querySelectorAll('#collectors tbody tr')) {
                if (row.querySelector('td.name').textContent === name) {
                    return row.querySelectorAll('svg.spark rect').length;
                }
            }
            return -1;
        }""",
        collector,
    )


def test_the_page_loads_clean_and_updates_after_a_new_run(live) -> None:
    monitor, server = live
    with browser(1280, 720) as b:
        b.page.goto(server.url)
        expect(b.page.locator(ROWS)).to_have_count(1, timeout=10_000)
        assert _runs_shown(b.page, "pools") == 1
        assert b.page.text_content("#overall") == "healthy"
        url_before = b.page.url
        run(monitor, "pools")
        run(monitor, "trades")
        expect(b.page.locator(ROWS)).to_have_count(2, timeout=10_000)
        assert _runs_shown(b.page, "pools") == 2
        assert b.page.url == url_before
        assert b.page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert b.errors == []


def test_hostile_names_and_messages_show_as_text_and_a_critical_page_stays_clean() -> None:
    with stored_monitor(None) as stored:
        populate(stored.monitor)
        for _ in range(3):
            run(stored.monitor, HOSTILE, fail=True)  # critical: /status would answer 503
        with (
            StatusServer(MonitorSource(stored.monitor), port=0, refresh_seconds=0.3) as server,
            browser(1280, 800) as b,
        ):
            dialogs: list[str] = []
            b.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            b.page.goto(server.url)
            expect(b.page.locator(ROWS)).to_have_count(3, timeout=10_000)
            names = b.page.eval_on_selector_all(
                "#collectors td.name", "cells => cells.map(c => c.textContent)"
            )
            assert HOSTILE in names
            alert_collectors = b.page.eval_on_selector_all(
                "#alerts td.name", "cells => cells.map(c => c.textContent)"
            )
            assert HOSTILE in alert_collectors
            # nothing parsed as markup: no element came out of a string
            assert b.page.locator("main script, main img").count() == 0
            assert b.page.title() == "critical · gecko-otel"
            b.page.wait_for_timeout(700)  # two more polls
            assert dialogs == []
            assert b.errors == []
            b.screenshot("status-page")


def test_the_page_asks_for_the_token_then_shows_the_data() -> None:
    with stored_monitor(None) as stored:
        run(stored.monitor, "pools")
        with (
            StatusServer(
                MonitorSource(stored.monitor), port=0, token="tok-123", refresh_seconds=0.3
            ) as server,
            browser() as b,
        ):
            b.page.goto(server.url)
            b.page.wait_for_selector("#login:not([hidden])")
            assert b.page.locator("#collectors tbody tr").count() == 0
            b.page.fill("#token", "tok-123")
            b.page.click("#login button")
            expect(b.page.locator(ROWS)).to_have_count(1, timeout=10_000)
            assert b.page.is_hidden("#login")
            # the only console errors: the 401s before the token was given
            assert all("401" in e for e in b.errors), b.errors


def test_warnings_metadata_text_never_reaches_the_page_unescaped(live) -> None:
    monitor, server = live
    run(monitor, HOSTILE_TEXT)
    with browser() as b:
        b.page.goto(server.url)
        expect(b.page.locator(ROWS)).to_have_count(2, timeout=10_000)
        assert HOSTILE_TEXT in b.page.eval_on_selector_all(
            "#collectors td.name", "cells => cells.map(c => c.textContent)"
        )
        assert b.page.title() != "pwned"
        assert b.errors == []
