"""The ``gecko-otel`` command line: the operator's view of a store.

``gecko-otel status gecko_otel.db`` (or ``python -m gecko_otel``). Each
command group is one module here with ``register(subcommands)``, which adds
its parsers through `gecko_otel.cli._context.add_command`, and a run
function taking the `Context`. Adding a command is a module and one name
in ``COMMAND_MODULES``.

Exit statuses: 0 ok, 1 unhealthy (``status --check``), 2 usage or
connection error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Final

from gecko_otel._version import __version__
from gecko_otel.cli._context import (
    ERROR,
    CliError,
    Context,
    add_command,
    duration,
    environ,
    error_line,
    stdio,
)

__all__ = [
    "COMMAND_MODULES",
    "CliError",
    "Context",
    "add_command",
    "build_parser",
    "duration",
    "main",
]

#: The modules of ``gecko_otel.cli`` that register commands, in ``--help`` order.
COMMAND_MODULES: Final = (
    "status",
    "runs",
    "alerts",
    "silences",
    "thresholds",
    "data",
    "report",
    "serve",
    "db",
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog="gecko-otel",
        description="Look at what your collectors did: status, history, alerts, exports.",
        epilog="Durations: 90s, 30m, 2h, 7d, 1w. Exit status: 0 ok, 1 unhealthy "
        "(status --check), 2 usage or connection error.",
    )
    parser.add_argument("--version", action="version", version=f"gecko-otel {__version__}")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"gecko_otel.cli.{name}").register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (``sys.exit(main())``)."""
    stdout, stderr = stdio()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else ERROR
    context = Context(args, stdout=stdout, stderr=stderr, environ=environ())
    try:
        status: int = args.run(context)
        return status
    except CliError as exc:
        stderr.write(f"gecko-otel: {exc}\n")
        return ERROR
    except BrokenPipeError:  # `gecko-otel history | head`
        return 0
    except KeyboardInterrupt:
        stderr.write("gecko-otel: interrupted\n")
        return 130
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

        if not isinstance(exc, SQLAlchemyError):
            raise
        stderr.write(f"gecko-otel: database error: {error_line(exc)}\n")
        return ERROR
    finally:
        context.close()
