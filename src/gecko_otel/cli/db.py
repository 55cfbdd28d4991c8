"""``gecko-otel db upgrade`` and ``db current``: the store's schema.

The only commands that may change the schema: every other command refuses
a database that is not at this gecko-otel's revision and names this one.
``python -m gecko_otel.store migrate|current`` runs these.
"""

from __future__ import annotations

import os
from typing import Any

from gecko_otel.cli._context import OK, CliError, Context, add_command, error_line
from gecko_otel.errors import ConfigError


def register(subcommands: Any) -> None:
    """Add ``db upgrade`` and ``db current``."""
    parser = subcommands.add_parser(
        "db", help="upgrade or inspect the store's schema", description="The store's schema."
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    add_command(
        actions,
        "upgrade",
        run_upgrade,
        help="bring the schema to this gecko-otel's revision (creates a missing SQLite file)",
        listing=False,
    )
    add_command(actions, "current", run_current, help="print the schema revision")


def run_upgrade(ctx: Context) -> int:
    """Migrate to the newest revision."""
    from gecko_otel.store.schema import HEAD_REVISION  # noqa: PLC0415

    revision = _with_engine(ctx, upgrade=True)
    ctx.line(f"schema at revision {revision} (newest: {HEAD_REVISION})")
    return OK


def run_current(ctx: Context) -> int:
    """Print the revision (``empty`` for a database without the schema)."""
    from gecko_otel.store.schema import HEAD_REVISION  # noqa: PLC0415

    revision = _with_engine(ctx, upgrade=False)
    if ctx.json:
        ctx.emit_json("db current", revision=revision, head=HEAD_REVISION)
    else:
        ctx.line(revision or "empty (no gecko-otel schema)")
    return OK


def _with_engine(ctx: Context, *, upgrade: bool) -> str | None:
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from gecko_otel.store._open import reader_url  # noqa: PLC0415
    from gecko_otel.store.engine import (  # noqa: PLC0415
        create_store_engine,
        current_revision,
        migrate,
    )

    try:
        engine = create_store_engine(reader_url(ctx.database()))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    try:
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        if not upgrade and path and not os.path.exists(path):
            # Inspecting must not leave an empty database behind a mistyped path.
            raise CliError(f"no database file at {os.path.abspath(path)}; check the path")
        if upgrade:
            return migrate(engine)
        with engine.connect() as connection:
            return current_revision(connection)
    except (ConfigError, SQLAlchemyError) as exc:
        raise CliError(error_line(exc)) from None
    finally:
        engine.dispose()
