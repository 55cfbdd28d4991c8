"""``gecko-otel alerts``, ``ack`` and ``resolve``.

``ack`` and ``resolve`` change the alert's row in the store; the Monitor
that owns the alert (in whatever process) reads the change within its
``watchdog_interval`` and applies it: an acknowledged alert stops
repeating, a resolved one is resolved there too and its handlers hear of it.
"""

from __future__ import annotations

from typing import Any

from gecko_otel._values.alerts import Alert, AlertState
from gecko_otel._values.health import AlertLevel
from gecko_otel.cli._context import OK, CliError, Context, add_command
from gecko_otel.cli._format import age, short_id, styled, tinted


def register(subcommands: Any) -> None:
    """Add ``alerts``, ``ack`` and ``resolve``."""
    alerts = add_command(subcommands, "alerts", run_alerts, help="list active alerts, newest first")
    alerts.add_argument("--all", action="store_true", help="resolved alerts too")
    alerts.add_argument(
        "--level", choices=[level.value for level in AlertLevel], help="alerts of this level"
    )
    alerts.add_argument("--collector", metavar="COLLECTOR", help="one collector's alerts")
    alerts.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (100)")
    for name, verb in (("ack", "acknowledge"), ("resolve", "resolve")):
        parser = add_command(
            subcommands,
            name,
            run_ack if name == "ack" else run_resolve,
            help=f"{verb} an alert (its Monitor applies it within watchdog_interval)",
            listing=False,
        )
        parser.add_argument("alert_id", metavar="ALERT_ID", help="the alert's id, or its prefix")


def run_alerts(ctx: Context) -> int:
    """List alerts (active ones unless ``--all``)."""
    args = ctx.args
    stored = ctx.store().alerts(
        level=AlertLevel(args.level) if args.level else None,
        collector_type=args.collector,
        active_only=not args.all,
        limit=args.limit,
    )
    alerts = [alert for alert, _ in stored]
    if ctx.json:
        ctx.emit_json("alerts", alerts=[alert.to_dict() for alert in alerts])
        return OK
    if not alerts:
        ctx.line("no alert" if args.all else "no active alert")
        return OK
    ctx.table(
        ("ID", "LEVEL", "STATE", "COLLECTOR", "RULE", "FIRED", "MESSAGE"),
        [
            (
                short_id(alert.id),
                styled(alert.level.value),
                tinted(
                    alert.state.value + (" silenced" if alert.suppressed else ""), alert.state.value
                ),
                alert.collector_type,
                alert.rule,
                age(alert.fired_at, ctx.now),
                alert.message,
            )
            for alert in alerts
        ],
        shrink=(3, 4, 6),
        right=(5,),
    )
    return OK


def run_ack(ctx: Context) -> int:
    """Acknowledge an alert: it stops repeating."""
    return _change(ctx, AlertState.ACKNOWLEDGED)


def run_resolve(ctx: Context) -> int:
    """Resolve an alert by hand: its handlers hear of the resolution."""
    return _change(ctx, AlertState.RESOLVED)


def _change(ctx: Context, state: AlertState) -> int:
    alert = _one_alert(ctx, ctx.args.alert_id)
    verb = "acknowledged" if state is AlertState.ACKNOWLEDGED else "resolved"
    what = f"alert {alert.id} ({alert.collector_type}: {alert.rule})"
    if alert.state is AlertState.RESOLVED or alert.state is state:
        ctx.line(f"{what} is {alert.state.value} already; nothing to do")
        return OK
    if not ctx.store().set_alert_state(alert.id, state, ctx.now):
        # Changed meanwhile (its Monitor resolved it, or another operator acted).
        ctx.line(f"{what} changed meanwhile; see: gecko-otel alerts --all")
        return OK
    ctx.line(f"{verb} {what}; its Monitor applies it within its watchdog_interval")
    return OK


def _one_alert(ctx: Context, alert_id: str) -> Alert:
    from gecko_otel.store.overview import find_alerts  # noqa: PLC0415

    found = find_alerts(ctx.store().engine, alert_id)
    if not found:
        raise CliError(f"no alert with id {alert_id!r}; list ids with: gecko-otel alerts --all")
    if len(found) > 1:
        raise CliError(f"{alert_id!r} matches several alerts; give more of the id")
    return found[0]
