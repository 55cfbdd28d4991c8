"""``gecko-otel report``: the HTML report of a store (`gecko_otel.reporting`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gecko_otel.cli._context import OK, CliError, Context, add_command, duration
from gecko_otel.errors import ConfigError


def register(subcommands: Any) -> None:
    """Add ``report [-o FILE] [--window 7d]``."""
    parser = add_command(
        subcommands,
        "report",
        run_report,
        help="write one self-contained HTML file with charts per collector",
        listing=False,
    )
    parser.add_argument(
        "-o", "--output", default="report.html", metavar="FILE", help="default: report.html"
    )
    parser.add_argument(
        "--window", type=duration, default=7 * 86400.0, metavar="DURATION", help="default: 7d"
    )


def run_report(ctx: Context) -> int:
    """Write the report and say where it is."""
    from gecko_otel.reporting import write_report  # noqa: PLC0415 - loads plotly

    try:
        path = write_report(
            ctx.store(), ctx.args.output, window=timedelta(seconds=ctx.args.window), now=ctx.now
        )
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    ctx.line(f"report written to {path} (open it in a browser; it needs no network)")
    return OK
