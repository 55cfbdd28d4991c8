"""``python -m gecko_otel.store``: apply or inspect the store's migrations by hand.

::

    python -m gecko_otel.store migrate [URL]    # = gecko-otel db upgrade [URL]
    python -m gecko_otel.store current [URL]    # = gecko-otel db current [URL]

``URL`` (a database URL or a SQLite file) defaults to
``GECKO_OTEL_DATABASE_URL``. A Monitor migrates on start anyway; this is for
deployments that migrate before starting collectors. Exit status: 0 ok,
2 usage or database error (one line on stderr).
"""

from __future__ import annotations

import sys

#: This module's commands and the ``gecko-otel db`` action each runs.
_ACTIONS = {"migrate": "upgrade", "current": "current"}


def main(argv: list[str] | None = None) -> int:
    """Run ``gecko-otel db upgrade|current``; the exit status (0 ok, 2 error)."""
    from gecko_otel.cli import main as cli_main  # noqa: PLC0415

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _ACTIONS:
        sys.stderr.write("usage: python -m gecko_otel.store {migrate,current} [URL]\n")
        return 2
    return cli_main(["db", _ACTIONS[args[0]], *args[1:]])


if __name__ == "__main__":
    sys.exit(main())
