"""The page around the figures: header (system health), summaries, layout.

Every value from the store goes through `esc` (``html.escape``); the only
unescaped markup is this module's own and plotly's output.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from gecko_otel._values.alerts import Alert
from gecko_otel._values.health import CollectionStatus
from gecko_otel._version import __version__
from gecko_otel.reporting._charts import (
    LEVEL_COLOURS,
    STATUS_COLOURS,
    figure_html,
    shared_script,
    span_text,
)
from gecko_otel.reporting._data import ReportData

#: How many collectors the header lists under "needs attention", and alerts it shows.
WORST: Final = 5
ALERTS_SHOWN: Final = 20

_HEALTH_COLOURS: Final = {
    "healthy": "#2e9d4f",
    "warning": "#e67e22",
    "critical": "#d43c3c",
    "unknown": "#7f8c8d",
}
_ORDER: Final = {"critical": 0, "warning": 1, "unknown": 2, "healthy": 3}

CSS: Final = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
background:#f6f7f9}
header,main,footer{max-width:1240px;margin:0 auto;padding:12px 20px}
h1{font-size:1.5rem;margin:.4em 0 .1em}h2{font-size:1.2rem;margin:0 0 .3em;word-break:break-all}
h3{font-size:1rem;margin:1.2em 0 .4em}
.sub,.meta{color:#555;margin:.2em 0}.meta span{margin-right:1em;display:inline-block}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(8.5rem,1fr));gap:10px;
margin:14px 0}
.card{background:#fff;border-radius:8px;padding:10px 12px;border-left:5px solid #ccc;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card b{display:block;font-size:1.6rem;line-height:1.2}
.scroll{overflow-x:auto;background:#fff;border-radius:8px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eee;vertical-align:top}
th{font-weight:600;color:#444;white-space:nowrap}td.msg{min-width:16rem}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:.8rem;
font-weight:600;vertical-align:middle}
section.collector{background:#fff;border-radius:8px;margin:18px 0;padding:14px 14px 4px;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
.plot{width:100%}
code{font-size:.85em;word-break:break-all}
@media (max-width:640px){header,main,footer{padding:8px}section.collector{padding:10px 4px 2px}
h1{font-size:1.25rem}.card b{font-size:1.3rem}}
"""


def esc(value: object) -> str:
    """``value`` as text safe anywhere in the page (quotes included)."""
    return html.escape(str(value), quote=True)


def render_page(data: ReportData, plotly_js: str, generated: datetime) -> str:
    """The whole HTML document."""
    names = sorted(data.names(), key=lambda n: (_ORDER[data.health(n).value], n))
    anchors = {name: f"c-{i}" for i, name in enumerate(names)}
    charted = [n for n in names if n in data.series or _alerts_of(data, n)]
    quiet = [n for n in names if n not in charted]
    window = (
        f"{data.since:%Y-%m-%d %H:%M} to {data.until:%Y-%m-%d %H:%M} UTC, "
        f"charts per {span_text(data.width)}"
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gecko-otel report: {esc(window)}</title>",
        f"<style>{CSS}</style>",
        f'<script type="text/javascript">{plotly_js}</script>',
        f"<script>{shared_script(data)}</script>",
        "</head><body><header>",
        "<h1>Collection report</h1>",
        f'<p class="sub">Store <code>{esc(data.store)}</code>; runs started {esc(window)}.</p>',
        _cards(data, names),
        _worst(data, names, anchors),
        _active_alerts(data, anchors),
        _collectors_table(data, names, anchors),
        "</header><main>",
    ]
    for index, name in enumerate(charted):
        parts.append(_section(data, name, anchors[name], index))
    if quiet:
        items = "".join(
            f'<li id="{anchors[n]}">{esc(n)}: last run {_when(_last_run(data, n))}</li>'
            for n in quiet
        )
        parts.append(f"<h3>No runs nor alerts in this window</h3><ul>{items}</ul>")
    parts.append(
        f"</main><footer><p class='sub'>Made by gecko-otel {esc(__version__)} at "
        f"{generated:%Y-%m-%d %H:%M:%S} UTC.</p></footer></body></html>\n"
    )
    return "\n".join(parts)


def _cards(data: ReportData, names: list[str]) -> str:
    counts = {status.value: 0 for status in CollectionStatus}
    for name in names:
        counts[data.health(name).value] += 1
    runs = sum(s.runs for s in data.series.values())
    started = sum(sum(s.started) for s in data.series.values())
    ok = sum(sum(s.ok) for s in data.series.values())
    rate = f"{100.0 * ok / started:.1f} %" if started else "none"
    cards = [
        (f"{counts[s]}", s, _HEALTH_COLOURS[s])
        for s in ("critical", "warning", "unknown", "healthy")
    ]
    cards += [
        (f"{len(data.active_alerts)}", "active alerts", "#8b0000"),
        (f"{runs:,}", "runs in window", "#2c3e50"),
        (rate, "success rate", "#2e9d4f"),
    ]
    body = "".join(
        f'<div class="card" style="border-left-color:{colour}" data-figure="{esc(label)}">'
        f"<b>{esc(value)}</b>{esc(label)}</div>"
        for value, label, colour in cards
    )
    return f'<div class="cards">{body}</div>'


def _worst(data: ReportData, names: list[str], anchors: dict[str, str]) -> str:
    bad = [n for n in names if data.health(n) is not CollectionStatus.HEALTHY][:WORST]
    if not bad:
        return "<h3>Needs attention</h3><p class='sub'>Nothing: every collector is healthy.</p>"
    rows = []
    for name in bad:
        row = data.collectors.get(name)
        alerts = [a for a in data.active_alerts if a.collector_type == name]
        score = f"{row.health_score:.0f}" if row and row.health_score is not None else ""
        rows.append(
            f'<tr><td><a href="#{anchors[name]}">{esc(name)}</a></td>'
            f"<td>{_badge(data.health(name).value)}</td><td>{score}</td>"
            f"<td>{row.consecutive_failures if row else ''}</td>"
            f"<td>{_when(row.last_success if row else None)}</td>"
            f'<td class="msg">{esc(alerts[0].message) if alerts else ""}</td></tr>'
        )
    head = (
        "<tr><th>collector</th><th>health</th><th>score</th><th>failures in a row</th>"
        "<th>last success</th><th>top alert</th></tr>"
    )
    return _table("Needs attention", head, rows, "worst")


def _active_alerts(data: ReportData, anchors: dict[str, str]) -> str:
    shown = data.active_alerts[:ALERTS_SHOWN]
    if not shown:
        return "<h3>Active alerts</h3><p class='sub'>None.</p>"
    rows = [
        f"<tr><td>{_badge(a.level.value, a.level.value)}</td>"
        f"<td>{_link(a.collector_type, anchors)}</td><td>{esc(a.rule)}</td>"
        f"<td>{esc(a.state.value)}{' (silenced)' if a.suppressed else ''}</td>"
        f"<td>{_when(a.fired_at or a.timestamp)}</td>"
        f'<td class="msg">{esc(a.message)}</td></tr>'
        for a in shown
    ]
    more = len(data.active_alerts) - len(shown)
    if more:
        rows.append(f'<tr><td colspan="6">and {more} more (newest shown)</td></tr>')
    head = (
        "<tr><th>level</th><th>collector</th><th>rule</th><th>state</th><th>fired</th>"
        "<th>message</th></tr>"
    )
    return _table(f"Active alerts ({len(data.active_alerts)})", head, rows, "alerts")


def _collectors_table(data: ReportData, names: list[str], anchors: dict[str, str]) -> str:
    rows = []
    for name in names:
        series = data.series.get(name)
        rate = series.success_rate if series else None
        p50 = series.overall(0.5) if series else None
        p95 = series.overall(0.95) if series else None
        rows.append(
            f'<tr><td><a href="#{anchors[name]}">{esc(name)}</a></td>'
            f"<td>{_badge(data.health(name).value)}</td>"
            f"<td>{series.runs if series else 0:,}</td><td>{_pct(rate)}</td>"
            f"<td>{_secs(p50)}</td><td>{_secs(p95)}</td>"
            f"<td>{sum(series.records) if series else 0:,}</td>"
            f"<td>{_when(_last_run(data, name))}</td></tr>"
        )
    head = (
        "<tr><th>collector</th><th>health</th><th>runs</th><th>success</th><th>p50</th>"
        "<th>p95</th><th>records</th><th>last run</th></tr>"
    )
    return _table(f"Collectors ({len(names)})", head, rows, "collectors")


def _section(data: ReportData, name: str, anchor: str, index: int) -> str:
    series = data.series.get(name)
    threshold = data.thresholds[name]
    latest = data.latest.get(name)
    facts = [
        f"{series.runs if series else 0:,} runs",
        f"success {_pct(series.success_rate if series else None)}",
        f"p50 {_secs(series.overall(0.5) if series else None)}",
        f"p95 {_secs(series.overall(0.95) if series else None)}",
        f"threshold {threshold.seconds:g} s ({threshold.source})",
    ]
    if series:
        for status in ("failure", "timeout", "missed", "skipped", "cancelled"):
            if count := series.status_total(status):
                facts.append(f"{count:,} {status}")
    meta = "".join(f"<span>{esc(fact)}</span>" for fact in facts)
    details = []
    if latest is not None:
        details.append(f"last run {_when(latest.start_time)}: {latest.status.value}")
        if latest.metadata:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(latest.metadata.items()))
            details.append(f"metadata {shown[:300]}")
    error = data.last_errors.get(name)
    if error is not None:
        what = f"{error.error_type or error.status.value}: {error.error_message or ''}"
        details.append(f"last error {_when(error.start_time)}: {what[:300]}")
    last = '<p class="meta">' + "".join(f"<span>{esc(d)}</span>" for d in details) + "</p>"
    figure = figure_html(series, name, data, f"plot-{index}")
    return (
        f'<section class="collector" id="{anchor}"><h2>{esc(name)} '
        f"{_badge(data.health(name).value)}</h2>"
        f'<p class="meta">{meta}</p>{last}<div class="plot">{figure}</div></section>'
    )


def _alerts_of(data: ReportData, name: str) -> list[Alert]:
    return [a for a in data.alerts if a.collector_type == name]


def _last_run(data: ReportData, name: str) -> datetime | None:
    latest = data.latest.get(name)
    if latest is not None:
        return latest.start_time
    row = data.collectors.get(name)
    return row.last_run if row else None


def _table(title: str, head: str, rows: Iterable[str], css_id: str) -> str:
    return (
        f'<h3>{esc(title)}</h3><div class="scroll"><table id="{css_id}">'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _badge(status: str, label: str | None = None) -> str:
    colour = _HEALTH_COLOURS.get(status) or STATUS_COLOURS.get(status) or LEVEL_COLOURS.get(status)
    return (
        f'<span class="badge" style="background:{colour or "#555"}">{esc(label or status)}</span>'
    )


def _link(name: str, anchors: dict[str, str]) -> str:
    anchor = anchors.get(name)
    return f'<a href="#{anchor}">{esc(name)}</a>' if anchor else esc(name)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "never"


def _pct(rate: float | None) -> str:
    return f"{rate:.1f} %" if rate is not None else "n/a"


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"
