"""What every command shares: its options, the store, output, durations, errors.

A command module registers its parser with `add_command` and receives a
`Context` when it runs. The Context opens the store on first use (never
migrating it), prints tables with rich (colour only on a terminal), prints
``--json`` documents, and shows progress bars on a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, TextIO

from gecko_otel._checks import parse_duration
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from gecko_otel.store.store import Store

#: Version of the ``--json`` documents; bumped only when a field changes meaning
#: or disappears (fields may be added within a version).
SCHEMA_VERSION: Final = 1
#: Exit statuses.
OK: Final = 0
UNHEALTHY: Final = 1
ERROR: Final = 2
#: The hint printed when a table is asked for without rich installed.
RICH_HINT: Final = (
    "tables need rich: pip install 'gecko-otel[cli]' (or add --json for plain JSON output)"
)
#: A positional argument taken as the database when it looks like one.
_DATABASE_SUFFIXES: Final = (".db", ".sqlite", ".sqlite3")

Subcommands = "argparse._SubParsersAction[argparse.ArgumentParser]"
Runner = Callable[["Context"], int]


class CliError(Exception):
    """An expected failure: its message is printed on one line and the exit status is 2."""


def duration(text: str) -> float:
    """An argparse ``type=`` for durations: ``90s``, ``30m``, ``2h``, ``7d``, ``1w``."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def operator() -> str | None:
    """``user@host`` for who set a silence or a threshold, when the system says."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError, ImportError):
        return None


def looks_like_database(value: str | None) -> bool:
    """Whether a positional argument names a database (a URL, or a SQLite file name)."""
    return bool(value) and ("://" in str(value) or str(value).lower().endswith(_DATABASE_SUFFIXES))


def add_command(
    subcommands: Any,
    name: str,
    run: Runner,
    *,
    help: str,
    listing: bool = True,
    database: bool = True,
) -> argparse.ArgumentParser:
    """Add a command: its parser with the shared options, set to call ``run``.

    Args:
        subcommands: What ``ArgumentParser.add_subparsers()`` returned.
        name: The command's name.
        run: Called with the `Context`; returns the exit status.
        help: One line for ``gecko-otel --help``.
        listing: Add ``--json``.
        database: Add the optional leading ``DATABASE`` argument and
            ``--database-url`` (a command may read no database).

    Returns:
        The command's parser, to add its own arguments to.
    """
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=help, description=help[:1].upper() + help[1:] + "."
    )
    if database:
        parser.add_argument(
            "database",
            nargs="?",
            metavar="DATABASE",
            help="SQLite file or database URL (default: --database-url, $GECKO_OTEL_DATABASE_URL)",
        )
        parser.add_argument("--database-url", metavar="URL", help="database URL")
    if listing:
        parser.add_argument("--json", action="store_true", help="print JSON (a stable schema)")
    parser.set_defaults(run=run)
    return parser


def shift_database(args: argparse.Namespace, positional: str) -> None:
    """A command with an optional positional of its own (``history [COLLECTOR]``):
    a lone argument that does not look like a database is that positional, and
    two are taken in either order when only the second looks like a database."""
    own = getattr(args, positional)
    if own is None and not looks_like_database(args.database):
        setattr(args, positional, args.database)
        args.database = None
    elif own is not None and looks_like_database(own) and not looks_like_database(args.database):
        setattr(args, positional, args.database)
        args.database = own


class Context:
    """A command's run: its arguments, the store, and where output goes.

    Args:
        args: The parsed arguments.
        stdout: Where results go.
        stderr: Where errors and progress go.
        environ: The environment (``GECKO_OTEL_DATABASE_URL``, ``GECKO_OTEL_TRACE_URL``).
    """

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        stdout: TextIO,
        stderr: TextIO,
        environ: Mapping[str, str],
    ) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.environ = environ
        self.now = datetime.now(timezone.utc)
        self._store: Store | None = None

    # -- the store -----------------------------------------------------------------

    def database(self) -> str:
        """The database asked for: the argument, ``--database-url``, or the environment."""
        chosen = (
            getattr(self.args, "database", None)
            or getattr(self.args, "database_url", None)
            or self.environ.get("GECKO_OTEL_DATABASE_URL")
        )
        if not chosen:
            raise CliError(
                "no database: give a SQLite file (gecko-otel status gecko_otel.db), "
                "--database-url URL, or set GECKO_OTEL_DATABASE_URL"
            )
        return str(chosen)

    def store(self) -> Store:
        """The store, opened on first use; its schema must be current (nothing is migrated)."""
        if self._store is None:
            from gecko_otel.store._open import open_reader  # noqa: PLC0415 - loads SQLAlchemy

            try:
                self._store = open_reader(self.database())
            except ConfigError as exc:
                raise CliError(str(exc)) from None
        return self._store

    def close(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- output --------------------------------------------------------------------

    @property
    def json(self) -> bool:
        """Whether ``--json`` was given."""
        return bool(getattr(self.args, "json", False))

    def emit_json(self, command: str, **fields: Any) -> None:
        """Print one ``--json`` document: ``schema_version``, ``command``,
        ``generated_at``, then ``fields``."""
        document = {
            "schema_version": SCHEMA_VERSION,
            "command": command,
            "generated_at": self.now.isoformat(),
            **fields,
        }
        json.dump(document, self.stdout, indent=2, default=str)
        self.stdout.write("\n")

    def console(self) -> Console:
        """A rich Console on stdout: colour only on a terminal, 80 columns elsewhere."""
        try:
            from rich.console import Console  # noqa: PLC0415 - the optional cli extra
        except ImportError:
            raise CliError(RICH_HINT) from None
        return Console(file=self.stdout, highlight=False, soft_wrap=False)

    def line(self, text: str) -> None:
        """Print a plain line on stdout (no rich needed)."""
        self.stdout.write(text + "\n")

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        shrink: Sequence[int] = (0,),
        right: Sequence[int] = (),
    ) -> None:
        """Print rows under headers; the ``shrink`` columns are cut (with …) to fit the width.

        A cell is text or a ``(text, style)`` pair; styles show on a terminal only.
        """
        console = self.console()
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
        texts = [[c[0] if isinstance(c, tuple) else str(c) for c in row] for row in rows]
        for i, header in enumerate(headers):
            fixed = max([len(header), *(len(row[i]) for row in texts)])
            table.add_column(
                header,
                no_wrap=True,
                overflow="ellipsis",
                justify="right" if i in right else "left",
                min_width=min(fixed, 8) if i in shrink else fixed,
            )
        for row in rows:
            table.add_row(
                *(Text(c[0], style=c[1]) if isinstance(c, tuple) else Text(str(c)) for c in row)
            )
        console.print(table)

    @contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Callable[[int], None]]:
        """A progress bar on stderr when it is a terminal and rich is there; yields ``advance``."""
        if not self.stderr.isatty():
            yield lambda _n: None
            return
        try:
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import Progress  # noqa: PLC0415
        except ImportError:
            yield lambda _n: None
            return
        with Progress(console=Console(file=self.stderr), transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def error_line(exc: BaseException) -> str:
    """The first line of an exception's message (no traceback)."""
    lines = str(exc).strip().splitlines()
    return (lines or [type(exc).__name__])[0][:300]


def environ() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ


def stdio() -> tuple[TextIO, TextIO]:
    """The current stdout and stderr (read at call time, so capture works)."""
    return sys.stdout, sys.stderr
