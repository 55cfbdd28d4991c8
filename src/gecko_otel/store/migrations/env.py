"""Alembic environment: run by `gecko_otel.store.engine.migrate` with a connection.

It is not meant for the ``alembic`` command line with an ``alembic.ini``:
gecko-otel applies its migrations itself, on start, with
``gecko_otel.store.migrate(engine)`` or ``python -m gecko_otel.store migrate URL``,
on the connection it passes in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from gecko_otel.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from a hand-run alembic
    raise RuntimeError(
        "gecko-otel migrations run through gecko_otel.store.migrate(engine) or "
        "'python -m gecko_otel.store migrate URL', not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
