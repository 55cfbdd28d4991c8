"""``gecko-otel status``: one line per collector, worst first; ``--check`` for probes."""

from __future__ import annotations

import argparse
from typing import Any

from gecko_otel._values.health import CollectionStatus
from gecko_otel.cli._context import OK, UNHEALTHY, Context, add_command, duration
from gecko_otel.cli._format import age, percent, span, styled, tinted

#: ``--fail-on`` levels: the health statuses that make ``--check`` exit 1.
FAILING = {
    "critical": {CollectionStatus.CRITICAL},
    "warning": {CollectionStatus.CRITICAL, CollectionStatus.WARNING},
}


def register(subcommands: Any) -> None:
    """Add ``status``."""
    parser = add_command(
        subcommands, "status", run, help="show each collector's health, worst first"
    )
    parser.add_argument(
        "--window",
        type=duration,
        default=86400.0,
        metavar="DURATION",
        help="period of the success rate and p95 (default: 24h)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a collector is unhealthy (see --fail-on)",
    )
    parser.add_argument(
        "--fail-on",
        choices=sorted(FAILING),
        default="critical",
        help="with --check: the health that fails (default: critical)",
    )


def run(ctx: Context) -> int:
    """Print the overview; with ``--check``, exit 1 when a collector is at ``--fail-on``."""
    from gecko_otel.store.overview import SAMPLE, collector_overview  # noqa: PLC0415
    from gecko_otel.store.silences import list_silences  # noqa: PLC0415

    args: argparse.Namespace = ctx.args
    rows = collector_overview(ctx.store().engine, window=args.window, now=ctx.now)
    silences = list_silences(ctx.store().engine, ctx.now)
    failing = [r for r in rows if r.health in FAILING[args.fail_on]]
    counts = {status.value: 0 for status in CollectionStatus}
    for row in rows:
        counts[row.health.value] += 1
    overall = rows[0].health.value if rows else CollectionStatus.UNKNOWN.value
    if ctx.json:
        ctx.emit_json(
            "status",
            database=ctx.store().describe(),
            window_seconds=args.window,
            overall=overall,
            counts=counts,
            collectors=[row.to_dict() for row in rows],
            silences=[s.to_dict(ctx.now) for s in silences],
        )
    elif not rows:
        ctx.line(f"no collector has stored a run in {ctx.store().describe()} yet")
    else:
        ctx.table(
            ("COLLECTOR", "HEALTH", "SCORE", "LAST", "LAST OK", "FAILS", "OK%", "P95", "ALERTS"),
            [
                (
                    row.collector_type,
                    styled(row.health.value),
                    "-" if row.health_score is None else f"{row.health_score:.0f}",
                    tinted(age(row.last_run, ctx.now), row.last_status),
                    age(row.last_success, ctx.now),
                    str(row.consecutive_failures),
                    percent(row.success_rate),
                    span(row.p95_duration),
                    tinted(str(row.active_alerts), row.worst_alert_level),
                )
                for row in rows
            ],
            shrink=(0,),
            right=(2, 3, 4, 5, 6, 7, 8),
        )
        summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        ctx.line(f"{len(rows)} collectors: {summary}")
        ctx.line(f"OK% and P95: last {span_window(args.window)}, newest {SAMPLE:,} runs each")
        if silences:
            what = ", ".join(
                f"{s.collector_type}{f' ({s.rule})' if s.rule else ''} {age(ctx.now, s.ends_at)}"
                for s in silences[:5]
            )
            more = f" and {len(silences) - 5} more" if len(silences) > 5 else ""
            ctx.line(f"silenced: {what}{more} left (gecko-otel silences)")
    if args.check and failing:
        return UNHEALTHY
    return OK


def span_window(seconds: float) -> str:
    """The window in a round unit (``24h``, ``7d``, ``90s``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
