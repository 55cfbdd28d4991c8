"""One plotly figure per collector: five charts sharing the window's time axis.

Runs per bucket by status (stacked bars); run time per bucket (p50 and p95
from the store's duration sketch, the longest run, and the threshold as a
dashed line, on a log axis so a 2 s collector and a 300 s threshold both
read); mean records per run; success rate per UTC day with the configured
minimum; and the alert timeline. The layout the figures share is sent once
(`shared_script`), evenly spaced series use ``x0``/``dx`` instead of a
timestamp per point, and values are rounded to 3 significant digits: that
keeps a week of 20 collectors to a few kilobytes each beside the 4.8 MB of
plotly.js.

Every string that comes from the store is escaped before it reaches plotly,
which renders a subset of HTML in labels and hover text.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any, Final

from gecko_otel._values.health import Usual
from gecko_otel.errors import ConfigError
from gecko_otel.reporting._data import (
    ALERTS_PER_COLLECTOR,
    CollectorSeries,
    ReportData,
    day_rates,
)

#: Status colours, shared with the page's badges.
STATUS_COLOURS: Final = {
    "success": "#2e9d4f",
    "partial": "#c9a227",
    "failure": "#d43c3c",
    "timeout": "#8e44ad",
    "cancelled": "#7f8c8d",
    "missed": "#e67e22",
    "skipped": "#3498db",
}
LEVEL_COLOURS: Final = {
    "info": "#3498db",
    "warning": "#e67e22",
    "error": "#d43c3c",
    "critical": "#8b0000",
}
#: Height of one collector's figure, in pixels.
FIGURE_HEIGHT: Final = 860
_ROWS: Final = 5
_MS: Final = 1000
_MISSING_PLOTLY: Final = "the HTML report needs plotly: pip install 'gecko-otel[report]'"


def plotly_js() -> str:
    """The plotly.js bundle to inline once in the page.

    Raises:
        ConfigError: plotly is not installed (the ``report`` extra).
    """
    try:
        from plotly.offline import get_plotlyjs  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise ConfigError(_MISSING_PLOTLY) from None
    script: str = get_plotlyjs()
    return script.replace("</script", "<\\/script")  # cannot end its <script> early


def shared_script(data: ReportData) -> str:
    """The layout and config every figure shares, and ``geckoPlot`` that draws one.

    Built once per page with plotly's own ``make_subplots`` (so plotly
    validates it); each collector's figure then sends only its traces and
    the few layout keys of its own.
    """
    from plotly.io.json import to_json_plotly  # noqa: PLC0415 - the optional extra
    from plotly.subplots import make_subplots  # noqa: PLC0415

    per = span_text(data.width)
    figure = make_subplots(
        rows=_ROWS,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.055,
        row_heights=[0.22, 0.24, 0.18, 0.16, 0.2],
        subplot_titles=(
            f"Runs per {per}, by status",
            f"Run time (s): p50, p95 and longest per {per}",
            f"Records per run (mean per {per})",
            "Success rate per UTC day (%)",
            "Alerts",
        ),
    )
    figure.update_layout(
        template="none",
        height=FIGURE_HEIGHT,
        autosize=True,
        barmode="stack",
        bargap=0.1,
        margin={"l": 48, "r": 12, "t": 36, "b": 28},
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom", "traceorder": "normal"},
        font={"size": 11},
        hovermode="closest",
    )
    figure.update_xaxes(
        type="date", range=[_x(data.since), _x(data.until)], showgrid=True, gridcolor="#eee"
    )
    figure.update_yaxes(showgrid=True, gridcolor="#eee", rangemode="tozero", automargin=True)
    figure.update_yaxes(type="log", rangemode="normal", row=2, col=1)
    figure.update_yaxes(range=[0, 105], row=4, col=1)
    figure.update_yaxes(type="category", row=5, col=1)
    figure.update_annotations(font_size=12, xanchor="left", x=0)
    layout = to_json_plotly(figure.to_plotly_json()["layout"])
    config = to_json_plotly({"responsive": True, "displaylogo": False})
    return _SHARED.replace("@LAYOUT@", layout).replace("@CONFIG@", config)


#: Draws one figure: a copy of the shared layout, the figure's own keys on top
#: (its annotations are added to the shared ones).
_SHARED: Final = """
const GECKO_LAYOUT = @LAYOUT@, GECKO_CONFIG = @CONFIG@;
function geckoPlot(id, traces, own) {
  const layout = JSON.parse(JSON.stringify(GECKO_LAYOUT));
  for (const [key, value] of Object.entries(own)) {
    if (key === "annotations") layout.annotations = layout.annotations.concat(value);
    else layout[key] = Object.assign(layout[key] || {}, value);
  }
  Plotly.newPlot(id, traces, layout, GECKO_CONFIG);
}
"""


def figure_html(series: CollectorSeries | None, name: str, data: ReportData, div_id: str) -> str:
    """The ``<div>`` and ``<script>`` drawing one collector's figure (after `shared_script`)."""
    from plotly.io.json import to_json_plotly  # noqa: PLC0415 - the optional extra

    traces: list[Any] = []
    own: dict[str, Any] = {}
    x0 = _x(data.bucket_start + timedelta(seconds=data.width / 2))
    dx = data.width * _MS
    if series is not None:
        for status, colour in STATUS_COLOURS.items():
            counts = series.counts.get(status)
            if counts and any(counts):
                traces.append(_bar(1, x0=x0, dx=dx, y=counts, name=status, marker_color=colour))
        for label, q, colour in (("p50", 0.5, "#2c3e50"), ("p95", 0.95, "#e67e22")):
            traces.append(
                _scatter(
                    2,
                    x0=x0,
                    dx=dx,
                    y=[_positive(v) for v in series.quantiles(q)],
                    name=label,
                    mode="lines+markers",
                    line={"color": colour, "width": 1.5},
                    marker={"color": colour, "size": 3},
                )
            )
        traces.append(
            _scatter(
                2,
                x0=x0,
                dx=dx,
                y=[_positive(v) for v in series.longest],
                name="longest",
                mode="markers",
                marker={"color": "#7f8c8d", "size": 4},
            )
        )
        means = [
            _r(r / s) if s else None for r, s in zip(series.records, series.started, strict=True)
        ]
        traces.append(
            _bar(
                3,
                x0=x0,
                dx=dx,
                y=means,
                name="records per run",
                marker_color="#16a085",
                showlegend=False,
            )
        )
        days = day_rates(series, data)
        if days:
            traces.append(
                _bar(
                    4,
                    x0=_x(days[0][0] + timedelta(hours=12)),
                    dx=86400 * _MS,
                    y=[_r(rate) for _, rate in days],
                    width=0.8 * 86400 * _MS,
                    name="success rate",
                    marker_color="#2e9d4f",
                    showlegend=False,
                )
            )
    edges = [_x(data.since), _x(data.until)]
    usual_records, usual_duration = data.baselines.get(name, (None, None))
    if usual_records is not None:
        _band(traces, 3, edges, usual_records, f"usual records {usual_records.text()}")
    if usual_duration is not None:
        text = f"usual run time {span_text_float(usual_duration.median)}"
        _band(traces, 2, edges, usual_duration, text)
    threshold = data.thresholds[name]
    traces.append(
        _scatter(
            2,
            x=edges,
            y=[threshold.seconds] * 2,
            mode="lines",
            hoverinfo="skip",
            name=f"threshold {threshold.seconds:g} s",
            line={"color": "#d43c3c", "dash": "dash", "width": 1},
        )
    )
    minimum = data.min_success_rate[name]
    traces.append(
        _scatter(
            4,
            x=edges,
            y=[minimum] * 2,
            mode="lines",
            hoverinfo="skip",
            showlegend=False,
            name=f"minimum {minimum:g} %",
            line={"color": "#d43c3c", "dash": "dash", "width": 1},
        )
    )
    if not _alert_timeline(traces, name, data):
        own["annotations"] = [
            {
                "text": "no alerts in this window",
                "showarrow": False,
                "xref": "x5 domain",
                "yref": "y5 domain",
                "x": 0.5,
                "y": 0.5,
                "font": {"color": "#7f8c8d"},
            }
        ]
        own["yaxis5"] = {"visible": False}
    return (
        f'<div id="{div_id}" class="plotly-graph-div" style="height:{FIGURE_HEIGHT}px;'
        f'width:100%"></div><script>geckoPlot("{div_id}",{to_json_plotly(traces)},'
        f"{to_json_plotly(own)})</script>"
    )


def _band(traces: list[Any], row: int, edges: list[str], usual: Usual, name: str) -> None:
    """The collector's usual range (its baseline) as a shaded band, the median dotted."""
    hidden = {"color": "rgba(22,160,133,0)", "width": 0}
    for value, look in (
        (usual.low, {"line": hidden, "showlegend": False}),
        (usual.high, {"line": hidden, "fill": "tonexty", "fillcolor": "rgba(22,160,133,0.15)"}),
        (
            usual.median,
            {"line": {"color": "#16a085", "dash": "dot", "width": 1}, "showlegend": False},
        ),
    ):
        traces.append(
            _scatter(
                row,
                x=edges,
                y=[_positive(value)] * 2,
                mode="lines",
                hoverinfo="skip",
                name=name,
                **look,
            )
        )


def span_text_float(seconds: float) -> str:
    """A run time as a person reads it: ``4us``, ``120ms``, ``2.1 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds:.2g} s"


def _bar(row: int, **values: Any) -> Any:
    from plotly.graph_objects import Bar  # noqa: PLC0415 - the optional extra

    return Bar(xaxis=_axis("x", row), yaxis=_axis("y", row), **values)


def _scatter(row: int, **values: Any) -> Any:
    from plotly.graph_objects import Scatter  # noqa: PLC0415 - the optional extra

    return Scatter(xaxis=_axis("x", row), yaxis=_axis("y", row), **values)


def _axis(letter: str, row: int) -> str:
    return letter if row == 1 else f"{letter}{row}"


def _alert_timeline(traces: list[Any], name: str, data: ReportData) -> bool:
    """Row 5: one bar per alert from firing to resolution (or the window's end while
    active), a diamond where it was acknowledged; the newest alerts only. False
    when the collector had no alert in the window."""
    mine = [a for a in data.alerts if a.collector_type == name][:ALERTS_PER_COLLECTOR]
    if not mine:
        return False
    by_level: dict[str, tuple[list[Any], list[Any], list[Any]]] = {}
    acknowledged: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for alert in reversed(mine):  # oldest first
        fired = alert.fired_at or alert.timestamp
        end = alert.resolved_at or data.until
        rule = html.escape(alert.rule)
        hover = "<br>".join(
            html.escape(part)
            for part in (
                f"{alert.rule} ({alert.level.value}, {alert.state.value})",
                alert.message[:300],
                f"fired {_when(fired)}",
                f"acknowledged {_when(alert.acknowledged_at)}" if alert.acknowledged_at else "",
                f"resolved {_when(alert.resolved_at)}" if alert.resolved_at else "still active",
            )
            if part
        )
        xs, ys, texts = by_level.setdefault(alert.level.value, ([], [], []))
        xs += [_x(max(fired, data.since)), _x(min(end, data.until)), None]
        ys += [rule, rule, None]
        texts += [hover, hover, None]
        if alert.acknowledged_at is not None and alert.acknowledged_at >= data.since:
            acknowledged[0].append(_x(alert.acknowledged_at))
            acknowledged[1].append(rule)
            acknowledged[2].append(hover)
    for level, (xs, ys, texts) in by_level.items():
        traces.append(
            _scatter(
                5,
                x=xs,
                y=ys,
                hovertext=texts,
                hoverinfo="text",
                mode="lines+markers",
                name=f"alert: {level}",
                line={"color": LEVEL_COLOURS.get(level, "#333"), "width": 6},
                marker={"size": 7},
            )
        )
    if acknowledged[0]:
        traces.append(
            _scatter(
                5,
                x=acknowledged[0],
                y=acknowledged[1],
                hovertext=acknowledged[2],
                hoverinfo="text",
                mode="markers",
                name="acknowledged",
                marker={"symbol": "diamond", "size": 10, "color": "#2c3e50"},
            )
        )
    return True


def span_text(seconds: int) -> str:
    """``hour``, ``5 minutes``, ``day``...: a bucket width in words."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} s"


def _x(moment: datetime) -> str:
    """A UTC time as plotly reads a date (the axis is labelled UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""


def _r(value: float | None) -> float | None:
    """3 significant digits: what a chart can show, and a third of the bytes."""
    return None if value is None else float(f"{value:.3g}")


def _positive(value: float | None) -> float | None:
    """For the log axis: a zero duration has no place on it."""
    return _r(value) if value else None
