"""Alembic migrations of the gecko-otel store (applied by ``gecko_otel.store.migrate``)."""
