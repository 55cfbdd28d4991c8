"""``python -m gecko_otel.store``: apply or inspect the store's migrations by hand.

::

    python -m gecko_otel.store migrate [URL]    # bring the schema to the newest revision
    python -m gecko_otel.store current [URL]    # print the database's revision

``URL`` defaults to ``GECKO_OTEL_DATABASE_URL``. A Monitor migrates on start
anyway; this is for deployments that migrate before starting collectors.
"""

from __future__ import annotations

import argparse
import os
import sys

from gecko_otel.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Run the command; the exit status (0 ok, 1 failed, 2 bad usage)."""
    parser = argparse.ArgumentParser(
        prog="python -m gecko_otel.store", description="gecko-otel store migrations"
    )
    parser.add_argument("command", choices=("migrate", "current"))
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("GECKO_OTEL_DATABASE_URL"),
        help="database URL (default: $GECKO_OTEL_DATABASE_URL)",
    )
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give a database URL or set GECKO_OTEL_DATABASE_URL")

    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from gecko_otel.store.engine import create_store_engine, current_revision, migrate  # noqa: PLC0415
    from gecko_otel.store.schema import HEAD_REVISION  # noqa: PLC0415

    try:
        engine = create_store_engine(args.url)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if args.command == "current" and path and not os.path.exists(path):
        engine.dispose()  # a mistyped path must not leave an empty database behind
        print(f"error: no database file at {path}", file=sys.stderr)
        return 1
    try:
        if args.command == "migrate":
            revision = migrate(engine)
            print(f"schema at revision {revision} (newest: {HEAD_REVISION})")
        else:
            with engine.connect() as connection:
                revision = current_revision(connection)
            print(revision or "empty (no gecko-otel schema)")
    except (ConfigError, SQLAlchemyError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
