"""``gecko-otel serve``: the live status page and probe endpoints of a store
(`gecko_otel.serving`)."""

from __future__ import annotations

from typing import Any

from gecko_otel.cli._context import OK, CliError, Context, add_command
from gecko_otel.errors import ConfigError

#: Where the bearer token comes from: an argument would show in ``ps``.
TOKEN_VARIABLE = "GECKO_OTEL_SERVE_TOKEN"


def register(subcommands: Any) -> None:
    """Add ``serve [--host 127.0.0.1] [--port 9465]``."""
    parser = add_command(
        subcommands,
        "serve",
        run_serve,
        help=f"serve the live status page and probes (token: ${TOKEN_VARIABLE})",
        listing=False,
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback)")
    parser.add_argument("--port", type=int, default=9465, help="default: 9465")


def run_serve(ctx: Context) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    from gecko_otel.serving import serve  # noqa: PLC0415
    from gecko_otel.store._open import reader_url  # noqa: PLC0415

    token = ctx.environ.get(TOKEN_VARIABLE) or None

    def ready(server: Any) -> None:
        protected = " (bearer token required)" if token else ""
        ctx.line(f"serving the status page at {server.url}{protected}; Ctrl-C stops it")
        ctx.stdout.flush()

    try:
        serve(reader_url(ctx.database()), ctx.args.host, ctx.args.port, token, ready=ready)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return OK
