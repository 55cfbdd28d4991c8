"""The report's content, on SQLite and a real PostgreSQL filled by a real Monitor."""

from __future__ import annotations

import html
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import gecko_otel
from gecko_otel import CollectorThresholds, ConfigError, MonitorConfig
from gecko_otel.reporting import render_report, write_report
from gecko_otel.store.engine import create_store_engine
from gecko_otel.testing import FakeClock
from reporting.conftest import COLLECTORS, HOSTILE, HOSTILE_NOTE, Filled
from support.store_helpers import StatementLog, stored_monitor

#: Every plotly.js bundle starts with this banner.
PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d")
FIGURE = 'class="plotly-graph-div"'


def card(text: str, label: str) -> str:
    """The figure shown on the header card labelled ``label``."""
    found = re.search(rf'data-figure="{re.escape(label)}"><b>([^<]*)</b>', text)
    assert found, f"no {label!r} card"
    return found.group(1)


def test_one_figure_per_collector_and_plotly_once(filled: Filled) -> None:
    text = render_report(filled.url, now=filled.now)
    assert text.count(FIGURE) == len(COLLECTORS)
    assert len(PLOTLY_BANNER.findall(text)) == 1
    assert text.count("Plotly.newPlot(") == 1  # in geckoPlot, which every figure calls
    assert text.count("geckoPlot(") == len(COLLECTORS) + 1
    # Each collector's baseline, as its Monitor stored it, is drawn as a band.
    assert "usual records " in text and "usual run time " in text


def test_header_gives_health_worst_collectors_and_active_alerts(filled: Filled) -> None:
    text = render_report(filled.url, now=filled.now)
    assert card(text, "runs in window") == f"{filled.runs:,}"
    # slow runs over its 1 ms threshold: warning, with its alert active; trades recovered.
    assert card(text, "warning") == "1"
    assert card(text, "healthy") == "3"
    assert card(text, "critical") == "0"
    assert card(text, "active alerts") == "1"
    worst = text[text.index('id="worst"') : text.index("</table>", text.index('id="worst"'))]
    assert ">slow</a>" in worst and "pools" not in worst
    alerts = text[text.index('id="alerts"') : text.index("</table>", text.index('id="alerts"'))]
    assert "slow_execution" in alerts
    assert "consecutive_failures" not in alerts  # resolved: in the timeline, not the header
    # 4 of trades' 48 runs failed
    assert "4 failure" in text
    assert "91.7 %" in text


def test_alert_timeline_shows_fired_acknowledged_and_resolved(filled: Filled) -> None:
    text = render_report(filled.url, now=filled.now)
    trades = text[text.index("<h2>trades ") :]
    trades = trades[: trades.index("</section>")]
    assert '"name":"alert: critical"' in trades
    assert '"name":"acknowledged"' in trades
    assert "resolved 20" in trades  # the hover text carries the resolution time
    pools = text[text.index("<h2>pools ") :]
    assert "no alerts in this window" in pools[: pools.index("</section>")]


def test_threshold_comes_from_the_store_when_it_knows_else_from_the_config(
    filled: Filled,
) -> None:
    text = render_report(filled.url, now=filled.now)
    assert "threshold 0.001 s (applied by its monitor (slow_execution alert of" in text
    assert "threshold 300 s (configured default)" in text
    config = MonitorConfig(collectors={"pools": CollectorThresholds(max_execution_time=42)})
    text = render_report(filled.url, now=filled.now, config=config)
    assert "threshold 42 s (configured for this collector)" in text
    assert '"name":"threshold 42 s"' in text
    # A stored threshold is what every monitor applies: it wins over both.
    from gecko_otel.store import thresholds
    from gecko_otel.store._open import open_reader

    store = open_reader(filled.url)
    try:
        thresholds.set_thresholds(store.engine, None, {"max_execution_time": 90}, now=filled.now)
        thresholds.set_thresholds(store.engine, "pools", {"max_execution_time": 7}, now=filled.now)
    finally:
        store.close()
    text = render_report(filled.url, now=filled.now, config=config)
    assert "threshold 7 s (stored for this collector)" in text
    assert "threshold 90 s (stored)" in text
    assert "s (configured" not in text and "applied by its monitor" not in text


def test_strings_from_the_store_are_escaped(filled: Filled) -> None:
    text = render_report(filled.url, now=filled.now)
    assert HOSTILE not in text
    assert "alert(1)" not in text.replace("alert(1)&lt;", "").replace("alert(1)\\u003c", "")
    assert "<img" not in text
    assert html.escape(HOSTILE) in text  # shown as text in its heading and tables
    assert html.escape(HOSTILE_NOTE, quote=True) in text  # its metadata, in its summary
    # trades' failure message, with a script in it, as its last error
    assert f"RuntimeError: upstream said {html.escape(HOSTILE)}" in text


def test_the_page_references_nothing_on_the_network(filled: Filled) -> None:
    text = render_report(filled.url, now=filled.now)
    tags = re.findall(r"<(?:script|link|img|iframe|source|embed)\b[^>]*>", text, re.IGNORECASE)
    sources = [t for t in tags if re.search(r"\b(?:src|href)\s*=", t, re.IGNORECASE)]
    assert sources == []
    # Outside the plotly.js bundle (whose code holds plotly's own links, never
    # followed: the browser test counts requests), no attribute points anywhere.
    start = text.index('<script type="text/javascript">')
    page = text[:start] + text[text.index("</script>", start) :]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page


def test_reads_in_a_few_grouped_queries_whatever_the_run_count(filled: Filled) -> None:
    engine = create_store_engine(filled.url)
    try:
        with StatementLog(engine) as log:
            render_report(engine, now=filled.now)
    finally:
        engine.dispose()
    tables = re.compile(r"\b(execution_history|system_alerts|collection_metadata)\b")
    selects = [s for s in log.statements if s.upper().startswith("SELECT") and tables.search(s)]
    # runs, alerts, active alerts, collectors, then for each collector its newest
    # run and its newest failure in the window
    assert len(selects) == 4 + 2 * len(COLLECTORS), selects
    assert filled.runs > 10 * len(COLLECTORS)
    assert sum("GROUP BY" in s.upper() for s in selects) == 1


def test_a_window_without_runs_charts_only_the_alert_still_active(filled: Filled) -> None:
    text = render_report(filled.url, now=filled.now + timedelta(days=30))
    assert text.count(FIGURE) == 1  # slow: its slow_execution alert still fires
    assert "<h2>slow " in text
    assert card(text, "runs in window") == "0"
    assert "No runs nor alerts in this window" in text
    assert ">pools: last run 20" in text


def test_a_week_of_twenty_busy_collectors_stays_under_5_mb(
    tmp_path: Path, span_clock: Callable[[float], None]
) -> None:
    """Every 2-hour bucket of every chart holds data: the largest a week gets."""
    url = f"sqlite:///{tmp_path / 'week.db'}"
    hours = 7 * 24
    span_clock(-hours * 3600)
    names = [f"collector_{i:02d}" for i in range(20)]
    with stored_monitor(url, clock=FakeClock(time.time() - hours * 3600)) as sm:
        tracks = [gecko_otel.track_collection(n, monitor=sm.monitor) for n in names]
        for hour in range(hours):
            for i, track in enumerate(tracks):
                try:
                    with track as run:
                        run.add_records(hour * 7 + i)
                        if (hour + i) % 5 == 0:
                            run.warn("slow upstream")
                        if (hour + i) % 7 == 0:
                            raise TimeoutError
                        if (hour + i) % 11 == 0:
                            raise ValueError("bad page")
                except (TimeoutError, ValueError):
                    pass
            span_clock(3600)
        assert sm.monitor.force_flush()
    path = write_report(url, tmp_path / "week.html", now=datetime.now(timezone.utc))
    text = path.read_text(encoding="utf-8")
    assert text.count(FIGURE) == 20
    assert '"name":"timeout"' in text and '"name":"partial"' in text
    assert path.stat().st_size < 5_000_000, path.stat().st_size


def test_write_report_replaces_the_file_whole(filled: Filled, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "report.html"
    target.write_text("old")
    assert write_report(filled.url, target, now=filled.now) == target.resolve()
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary left


def test_without_plotly_one_line_names_the_extra(
    filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "plotly.offline", None)  # import fails
    with pytest.raises(ConfigError) as caught:
        render_report(filled.url, now=filled.now)
    message = str(caught.value)
    assert "gecko-otel[report]" in message and "\n" not in message


@pytest.mark.parametrize("window", [timedelta(0), timedelta(days=-1)])
def test_refuses_an_empty_window(tmp_path: Path, window: timedelta) -> None:
    with pytest.raises(ConfigError, match="positive"):
        render_report(f"sqlite:///{tmp_path / 'x.db'}", window=window)


def test_refuses_a_naive_now(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        render_report(f"sqlite:///{tmp_path / 'x.db'}", now=datetime(2026, 1, 1))


def test_reads_only_a_gecko_otel_store_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(ConfigError, match="no SQLite store"):
        render_report(f"sqlite:///{missing}")
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    engine = create_store_engine(f"sqlite:///{empty}")
    with engine.connect():
        pass  # an empty SQLite file
    engine.dispose()
    with pytest.raises(ConfigError, match="no gecko-otel schema"):
        render_report(f"sqlite:///{empty}")
