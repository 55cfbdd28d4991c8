"""``gecko-otel thresholds``: see and change the thresholds of a running fleet.

Stored thresholds are rows in the store (`gecko_otel.store.thresholds`):
every Monitor sharing it applies them within its ``watchdog_interval``,
over its configured ones, and re-evaluates the collectors they change.
Without ``--set``/``--unset``/``--reset`` the command shows the thresholds
in force for a collector (or for every collector) and where each comes
from. Values configured in code (``MonitorConfig``) live in each process
and are not visible here; this command shows the environment's
(``GECKO_OTEL_*``) and the defaults instead.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from gecko_otel._checks import parse_duration
from gecko_otel._config import ENV_VARS, OFF_WHEN_ZERO, THRESHOLD_FIELDS, MonitorConfig
from gecko_otel._health.thresholds import DURATION_FIELDS, INTEGER_FIELDS, describe
from gecko_otel.cli._context import OK, CliError, Context, add_command, operator, shift_database
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from gecko_otel.store.thresholds import StoredThreshold


def register(subcommands: Any) -> None:
    """Add ``thresholds``."""
    command = add_command(
        subcommands,
        "thresholds",
        run_thresholds,
        help="show or change thresholds (every Monitor on the store applies them)",
    )
    command.add_argument(
        "collector", nargs="?", metavar="COLLECTOR", help="one collector (default: every one)"
    )
    command.add_argument(
        "--set",
        dest="changes",
        action="append",
        type=_assignment,
        default=[],
        metavar="NAME=VALUE",
        help="store a value, such as max_execution_time=10m (repeatable)",
    )
    command.add_argument(
        "--unset",
        action="append",
        default=[],
        metavar="NAME",
        help="drop a stored value: the configured one applies again (repeatable)",
    )
    command.add_argument(
        "--reset", action="store_true", help="drop every stored value of this scope"
    )


def run_thresholds(ctx: Context) -> int:
    """Show the thresholds in force; with --set, --unset or --reset, change them first."""
    from gecko_otel.store import thresholds as stored  # noqa: PLC0415 - loads SQLAlchemy

    args = ctx.args
    shift_database(args, "collector")
    try:
        config = MonitorConfig.from_env(ctx.environ)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    for name in args.unset:
        _check_name(name)
    engine = ctx.store().engine
    scope, changed, removed = args.collector, [], 0
    try:
        if args.reset or args.unset:
            removed = stored.unset_thresholds(engine, scope, None if args.reset else args.unset)
        if args.changes:
            changed = stored.set_thresholds(
                engine, scope, dict(args.changes), now=ctx.now, updated_by=operator()
            )
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    rows = _in_force(config, ctx.environ, stored.list_thresholds(engine, scope), scope)
    if ctx.json:
        ctx.emit_json(
            "thresholds",
            collector_type=scope,
            changed=[row.to_dict() for row in changed],
            removed=removed,
            thresholds=rows,
        )
        return OK
    target = scope if scope is not None else "every collector"
    for row in changed:
        ctx.line(f"stored {row.name} = {describe(row.name, row.value)} for {target}")
    if args.reset or args.unset:
        ctx.line(f"removed {removed} stored value{'s' if removed != 1 else ''} for {target}")
    if changed or args.reset or args.unset:
        ctx.line("Monitors on this store apply the change within their watchdog_interval")
    ctx.table(
        ("THRESHOLD", "VALUE", "FROM", "SET BY"),
        [
            (row["name"], describe(row["name"], row["value"]), row["source"], _by(row))
            for row in rows
        ],
        shrink=(3,),
    )
    return OK


def _in_force(
    config: MonitorConfig,
    environ: Any,
    rows: list[StoredThreshold],
    collector_type: str | None,
) -> list[dict[str, Any]]:
    """Each threshold's value in force for the scope and where it comes from.

    Sources, first that sets it: ``stored`` (for this scope), ``stored (all)``
    (stored for every collector), ``environment``, ``default``.
    """
    mine = {r.name: r for r in rows if r.collector_type == collector_type}
    every = {r.name: r for r in rows if r.collector_type is None}
    out = []
    for name in THRESHOLD_FIELDS:
        row = mine.get(name) or every.get(name)
        if row is not None:
            source = "stored" if row.collector_type == collector_type else "stored (all)"
            value: float | None = row.value
        else:
            source = "environment" if environ.get(ENV_VARS[name][0], "").strip() else "default"
            value = getattr(config, name)
        if name in INTEGER_FIELDS and value is not None:
            value = int(value)
        if name in OFF_WHEN_ZERO and value == 0:
            value = None
        out.append(
            {
                "name": name,
                "value": value,
                "source": source,
                "updated_by": row.updated_by if row is not None else None,
                "updated_at": row.updated_at.isoformat() if row is not None else None,
            }
        )
    return out


def _assignment(text: str) -> tuple[str, float]:
    """An argparse ``type=`` for ``NAME=VALUE``: durations as ``10m``, ``off`` for no rule."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not raw:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE, such as stale_after=2h")
    try:
        _check_name(name)
    except CliError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    try:
        if name in OFF_WHEN_ZERO and raw.lower() == "off":
            return name, 0.0
        if name in DURATION_FIELDS:
            return name, parse_duration(raw)
        return name, float(int(raw)) if name in INTEGER_FIELDS else float(raw)
    except (ConfigError, ValueError):
        kind = (
            "a duration such as 90s, 10m or 2h"
            if name in DURATION_FIELDS
            else "a whole number"
            if name in INTEGER_FIELDS
            else "a number"
        ) + (" or off" if name in OFF_WHEN_ZERO else "")
        raise argparse.ArgumentTypeError(f"{name}={raw!r}: give {kind}") from None


def _check_name(name: str) -> None:
    if name not in THRESHOLD_FIELDS:
        raise CliError(f"{name!r} is not a threshold; thresholds are {', '.join(THRESHOLD_FIELDS)}")


def _by(row: dict[str, Any]) -> str:
    if row["updated_at"] is None:
        return ""
    return f"{row['updated_by'] or '?'} {row['updated_at'][:16].replace('T', ' ')}"
