"""The report in a real headless Chromium, offline, at desktop and phone widths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gecko_otel.reporting import write_report
from reporting.conftest import COLLECTORS, HOSTILE, fill
from support.browser import browser

pytestmark = pytest.mark.integration

#: Plots plotly has drawn (it adds ``js-plotly-plot`` and an SVG when a figure renders).
DRAWN = "document.querySelectorAll('.js-plotly-plot .main-svg').length"


@pytest.fixture
def report(tmp_path: Path, span_clock: Callable[[float], None]) -> Path:
    filled = fill(f"sqlite:///{tmp_path / 'gecko_otel.db'}", span_clock)
    return write_report(filled.url, tmp_path / "report.html", now=filled.now)


@pytest.mark.parametrize(
    ("width", "height", "name"), [(1280, 800, "report-desktop"), (390, 844, "report-phone")]
)
def test_the_report_renders_one_chart_per_collector_offline(
    report: Path, width: int, height: int, name: str
) -> None:
    with browser(width, height) as b:
        requests: list[str] = []
        dialogs: list[str] = []

        def offline(route: Any) -> None:
            if not route.request.url.startswith("file:"):
                requests.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        b.page.route("**/*", offline)
        b.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        b.page.goto(report.as_uri(), wait_until="load")
        b.page.wait_for_function(f"{DRAWN} >= {len(COLLECTORS)}", timeout=20_000)
        drawn = b.page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        assert drawn == len(COLLECTORS)
        # each figure drew its five charts' bars, lines or markers
        traces = b.page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].map(p => p.data.length)"
        )
        assert all(n >= 5 for n in traces), traces
        assert b.errors == []
        assert requests == []
        assert dialogs == []  # the hostile collector's script never ran
        headings = b.page.locator("section.collector h2").all_inner_texts()
        assert any(h.startswith(HOSTILE) for h in headings), headings
        # nothing wider than the screen: tables scroll in their own box
        assert b.page.evaluate("document.documentElement.scrollWidth") <= width
        widths = b.page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].map(p => p.offsetWidth)"
        )
        assert all(w <= width for w in widths) and min(widths) > width * 0.8, widths
        assert b.screenshot(name).stat().st_size > 10_000
