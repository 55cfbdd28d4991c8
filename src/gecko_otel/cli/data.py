"""``gecko-otel export`` and ``prune``: stored runs out to a file, old rows away."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import IO, Any

from gecko_otel._values.records import ExecutionStatus
from gecko_otel.cli._context import OK, CliError, Context, add_command, duration
from gecko_otel.cli._format import count

#: Tables ``prune`` deletes from, in the order it goes.
PRUNED = ("execution_history", "performance_metrics", "system_alerts")


def register(subcommands: Any) -> None:
    """Add ``export`` and ``prune``."""
    export = add_command(
        subcommands,
        "export",
        run_export,
        help="write stored runs, oldest first, as JSON lines or CSV",
        listing=False,
    )
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument(
        "--since", type=duration, metavar="DURATION", help="runs started within (e.g. 7d)"
    )
    export.add_argument("--collector", metavar="COLLECTOR", help="one collector's runs")
    export.add_argument(
        "--status", choices=[s.value for s in ExecutionStatus], help="runs with this status"
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")

    prune = add_command(
        subcommands,
        "prune",
        run_prune,
        help="delete runs, metric points and resolved alerts older than a duration",
    )
    prune.add_argument(
        "--older-than", type=duration, required=True, metavar="DURATION", help="e.g. 30d"
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")


def run_export(ctx: Context) -> int:
    """Stream the runs (``STREAM_CHUNK`` at a time) to a file or stdout."""
    from gecko_otel.store.export import write_export  # noqa: PLC0415

    args = ctx.args
    store = ctx.store()
    since = ctx.now - timedelta(seconds=args.since) if args.since else None
    status = ExecutionStatus(args.status) if args.status else None
    total: int | None = None
    if ctx.stderr.isatty():  # the bar's total: one count, only for a person watching
        from gecko_otel.store.overview import window_statistics  # noqa: PLC0415

        total = sum(
            s.total_executions
            for s in window_statistics(
                store.engine, since=since, collector_type=args.collector
            ).values()
        )
    rows = store.iter_history(args.collector, since=since, status=status)
    try:
        out: IO[str] = (
            open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
            if args.output
            else sys.stdout
        )
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror}") from None
    try:
        with ctx.progress(total, "exporting runs") as advance:
            written = write_export(out, args.format, _counted(rows, advance))
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        ctx.stderr.write(f"exported {written:,} runs to {args.output}\n")
    return OK


def _counted(rows: Iterator[dict[str, Any]], advance: Any) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(rows, 1):
        yield row
        if i % 1000 == 0:
            advance(1000)


def run_prune(ctx: Context) -> int:
    """Delete (or count, with ``--dry-run``) rows older than ``--older-than``."""
    args = ctx.args
    store = ctx.store()
    before = ctx.now - timedelta(seconds=args.older_than)
    counts = store.cleanup_counts(runs_before=before, metrics_before=before, alerts_before=before)
    if not args.dry_run:
        with ctx.progress(sum(counts.values()), "pruning") as advance:
            counts = store.cleanup(
                runs_before=before,
                metrics_before=before,
                alerts_before=before,
                on_batch=lambda _table, n: advance(n),
            )
    if ctx.json:
        ctx.emit_json(
            "prune",
            dry_run=args.dry_run,
            older_than_seconds=args.older_than,
            before=before.isoformat(),
            rows=counts,
        )
        return OK
    verb = "would delete" if args.dry_run else "deleted"
    ctx.table(
        ("TABLE", "ROWS " + verb.upper()),
        [(table, count(counts[table])) for table in PRUNED],
        right=(1,),
    )
    ctx.line(f"{verb} rows older than {before:%Y-%m-%d %H:%M:%S} UTC (active alerts are kept)")
    return OK
