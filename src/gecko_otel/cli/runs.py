"""``gecko-otel history``, ``show`` and ``stats``: what the collectors did."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gecko_otel._values.records import ExecutionStatus
from gecko_otel.cli._context import OK, CliError, Context, add_command, duration, shift_database
from gecko_otel.cli._format import count, moment, percent, short_id, span, styled


def register(subcommands: Any) -> None:
    """Add ``history``, ``show`` and ``stats``."""
    history = add_command(subcommands, "history", run_history, help="list runs, newest first")
    history.add_argument("collector", nargs="?", metavar="COLLECTOR", help="one collector only")
    history.add_argument(
        "--status", choices=[s.value for s in ExecutionStatus], help="runs with this status"
    )
    history.add_argument(
        "--since", type=duration, metavar="DURATION", help="runs started within (e.g. 2h)"
    )
    history.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="at most N runs (default: 50)"
    )

    show = add_command(subcommands, "show", run_show, help="show one run in full")
    show.add_argument("execution_id", metavar="EXECUTION_ID", help="the run's id, or its prefix")

    stats = add_command(subcommands, "stats", run_stats, help="show run statistics per collector")
    stats.add_argument("collector", nargs="?", metavar="COLLECTOR", help="one collector only")
    stats.add_argument(
        "--window", type=duration, metavar="DURATION", help="runs started within (default: all)"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def run_history(ctx: Context) -> int:
    """List runs newest first."""
    args = ctx.args
    shift_database(args, "collector")
    since = ctx.now - timedelta(seconds=args.since) if args.since else None
    status = ExecutionStatus(args.status) if args.status else None
    runs = ctx.store().history(args.collector, limit=args.limit, status=status, since=since)
    if ctx.json:
        ctx.emit_json("history", runs=[run.to_dict() for run in runs])
        return OK
    if not runs:
        ctx.line("no run matches")
        return OK
    ctx.table(
        ("STARTED (UTC)", "COLLECTOR", "STATUS", "TIME", "RECORDS", "ID"),
        [
            (
                moment(run.start_time),
                run.collector_type,
                styled(run.status.value),
                span(run.duration_seconds),
                count(run.records_collected),
                short_id(run.execution_id),
            )
            for run in runs
        ],
        shrink=(1,),
        right=(3, 4),
    )
    return OK


def run_show(ctx: Context) -> int:
    """Print one run: every field, its trace id and a trace link."""
    from gecko_otel.store.overview import find_runs  # noqa: PLC0415

    args = ctx.args
    found = find_runs(ctx.store().engine, args.execution_id)
    if not found:
        raise CliError(f"no run with id {args.execution_id!r}; list ids with: gecko-otel history")
    if len(found) > 1:
        raise CliError(f"{args.execution_id!r} matches several runs; give more of the id")
    run = found[0]
    template = ctx.environ.get("GECKO_OTEL_TRACE_URL")
    link = template.replace("{trace_id}", run.trace_id) if template and run.trace_id else None
    if ctx.json:
        ctx.emit_json("show", run=run.to_dict(), trace_url=link)
        return OK
    console = ctx.console()
    fields: list[tuple[str, Any]] = [
        ("execution id", run.execution_id),
        ("collector", run.collector_type),
        ("status", styled(run.status.value)),
        ("started", run.start_time.isoformat()),
        ("ended", run.end_time.isoformat() if run.end_time else "-"),
        ("duration", span(run.duration_seconds)),
        ("records", count(run.records_collected)),
        ("error", f"{run.error_type}: {run.error_message}" if run.error_type else "-"),
        ("trace id", run.trace_id or "-"),
        ("span id", run.span_id or "-"),
    ]
    if link:
        fields.append(("trace", link))
    fields += [(f"metadata.{k}", str(v)) for k, v in sorted(run.metadata.items())]
    fields += [("warning", w) for w in run.warnings] + [("error message", e) for e in run.errors]
    if run.dropped_messages:
        fields.append(("dropped messages", str(run.dropped_messages)))
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in fields:
        table.add_row(name, Text(*value) if isinstance(value, tuple) else Text(str(value)))
    console.print(table)
    return OK


def run_stats(ctx: Context) -> int:
    """Print statistics per collector (over a window, or every stored run)."""
    from gecko_otel._health.baseline import usual_of  # noqa: PLC0415
    from gecko_otel.store.baselines import read_baselines  # noqa: PLC0415
    from gecko_otel.store.overview import window_statistics  # noqa: PLC0415

    args = ctx.args
    shift_database(args, "collector")
    since = ctx.now - timedelta(seconds=args.window) if args.window else None
    statistics = window_statistics(ctx.store().engine, since=since, collector_type=args.collector)
    if args.collector and not statistics and not ctx.json:
        raise CliError(f"no stored run of collector {args.collector!r} in that window")
    stored = read_baselines(ctx.store().engine)
    baselines = {
        name: (stored[name].runs, *usual_of(stored[name])) for name in statistics if name in stored
    }
    if ctx.json:
        ctx.emit_json(
            "stats",
            window_seconds=args.window,
            statistics=[s.to_dict() | {"window_seconds": args.window} for s in statistics.values()],
            baselines=[
                {
                    "collector_type": name,
                    "runs": runs,
                    "usual_records": records.to_dict() if records else None,
                    "usual_duration": duration.to_dict() if duration else None,
                }
                for name, (runs, records, duration) in baselines.items()
            ],
        )
        return OK
    ctx.table(
        ("COLLECTOR", "RUNS", "OK%", "FAILED", "AVG", "P50", "P95", "RECORDS"),
        [
            (
                name,
                count(s.total_executions),
                percent(s.success_rate if s.total_executions else None),
                count(s.failed_executions + s.timeout_executions),
                span(s.average_duration),
                span(s.p50_duration),
                span(s.p95_duration),
                count(s.total_records_collected),
            )
            for name, s in statistics.items()
        ],
        shrink=(0,),
        right=(1, 2, 3, 4, 5, 6, 7),
    )
    if baselines:
        ctx.line("")
        ctx.table(
            ("COLLECTOR", "LEARNED", "USUAL RECORDS (RANGE)", "USUAL RUN TIME (RANGE)"),
            [
                (
                    name,
                    count(runs),
                    records.text() if records else "-",
                    f"{span(duration.median)} ({span(duration.low)}-{span(duration.high)})"
                    if duration
                    else "-",
                )
                for name, (runs, records, duration) in baselines.items()
            ],
            shrink=(0,),
            right=(1,),
        )
    return OK
