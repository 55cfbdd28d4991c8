"""``gecko-otel silence``, ``silences`` and ``unsilence``.

A silence is a row in the store: every Monitor sharing it reads the active
silences within its ``watchdog_interval`` and holds back the notifications
of matching alerts (they still fire and are listed) until the silence
expires or is ended with ``unsilence``; what it held back is then notified.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from gecko_otel.cli._context import (
    OK,
    CliError,
    Context,
    add_command,
    duration,
    operator,
    shift_database,
)
from gecko_otel.cli._format import age
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from gecko_otel.store.silences import Silence


def register(subcommands: Any) -> None:
    """Add ``silence``, ``silences`` and ``unsilence``."""
    silence = add_command(
        subcommands,
        "silence",
        run_silence,
        help="silence a collector's alerts for a while (every Monitor on the store honours it)",
    )
    silence.add_argument("collector", metavar="COLLECTOR", help="the collector to silence")
    silence.add_argument(
        "--for",
        dest="length",
        type=duration,
        required=True,
        metavar="DURATION",
        help="how long: 30m, 2h, 1d",
    )
    silence.add_argument("--rule", metavar="RULE", help="one rule only (default: every rule)")
    silence.add_argument("--comment", metavar="TEXT", help="why, for whoever looks later")

    listing = add_command(subcommands, "silences", run_silences, help="list active silences")
    listing.add_argument("--all", action="store_true", help="ended and expired silences too")

    unsilence = add_command(
        subcommands,
        "unsilence",
        run_unsilence,
        help="end silences now (by id, or a collector's)",
    )
    unsilence.add_argument("silence_id", nargs="?", metavar="SILENCE_ID", help="the silence's id")
    unsilence.add_argument("--collector", metavar="COLLECTOR", help="end this collector's")
    unsilence.add_argument("--rule", metavar="RULE", help="with --collector: this rule's only")


def run_silence(ctx: Context) -> int:
    """Store a silence."""
    from gecko_otel.store.silences import add_silence  # noqa: PLC0415 - loads SQLAlchemy

    args = ctx.args
    try:
        silence = add_silence(
            ctx.store().engine,
            args.collector,
            length=timedelta(seconds=args.length),
            now=ctx.now,
            rule=args.rule,
            comment=args.comment,
            created_by=operator(),
        )
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if ctx.json:
        ctx.emit_json("silence", silence=silence.to_dict(ctx.now))
        return OK
    ctx.line(
        f"silence {silence.id}: {_what(silence)} until {silence.ends_at:%Y-%m-%d %H:%M} UTC; "
        "Monitors apply it within their watchdog_interval"
    )
    return OK


def run_silences(ctx: Context) -> int:
    """List silences (active ones unless ``--all``)."""
    from gecko_otel.store.silences import list_silences  # noqa: PLC0415

    found = list_silences(ctx.store().engine, ctx.now, include_inactive=ctx.args.all)
    if ctx.json:
        ctx.emit_json("silences", silences=[s.to_dict(ctx.now) for s in found])
        return OK
    if not found:
        ctx.line("no silence" if ctx.args.all else "no active silence")
        return OK
    ctx.table(
        ("ID", "COLLECTOR", "RULE", "STATE", "ENDS", "BY", "COMMENT"),
        [
            (
                str(s.id),
                s.collector_type,
                s.rule or "(all)",
                _state(s, ctx),
                f"{s.ends_at:%Y-%m-%d %H:%M}",
                s.created_by or "",
                s.comment or "",
            )
            for s in found
        ],
        shrink=(1, 5, 6),
    )
    return OK


def run_unsilence(ctx: Context) -> int:
    """End silences now; Monitors notify what they held back on their next sync."""
    from gecko_otel.store.silences import end_silences, get_silence  # noqa: PLC0415

    args = ctx.args
    shift_database(args, "silence_id")
    if (args.silence_id is None) == (args.collector is None):
        raise CliError("give a SILENCE_ID or --collector COLLECTOR (not both)")
    if args.rule is not None and args.collector is None:
        raise CliError("--rule goes with --collector")
    engine = ctx.store().engine
    if args.silence_id is not None:
        try:
            silence_id = int(args.silence_id)
        except ValueError:
            raise CliError(
                f"{args.silence_id!r} is not a silence id; list them with: gecko-otel silences"
            ) from None
        ended = end_silences(engine, ctx.now, silence_id=silence_id)
        if not ended:
            existing = get_silence(engine, silence_id)
            if existing is None:
                raise CliError(
                    f"no silence {silence_id}; list them with: gecko-otel silences --all"
                )
    else:
        ended = end_silences(engine, ctx.now, collector_type=args.collector, rule=args.rule)
    if ctx.json:
        ctx.emit_json("unsilence", ended=[s.to_dict(ctx.now) for s in ended])
        return OK
    if not ended:
        ctx.line("no active silence matched; nothing to do")
        return OK
    for s in ended:
        ctx.line(f"ended silence {s.id}: {_what(s)}")
    ctx.line("Monitors notify what it held back within their watchdog_interval")
    return OK


def _what(silence: Silence) -> str:
    rule = f" (rule {silence.rule})" if silence.rule else " (every rule)"
    return f"{silence.collector_type}{rule}"


def _state(silence: Silence, ctx: Context) -> str:
    if silence.ended_at is not None:
        return "ended"
    if silence.active(ctx.now):
        return f"active, {age(ctx.now, silence.ends_at)} left"
    return "expired"
