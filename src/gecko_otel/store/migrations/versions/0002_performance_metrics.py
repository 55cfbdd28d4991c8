"""Metric points written by the store's metric exporter.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "performance_metrics",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("collector_type", sa.String(255)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("count", sa.BigInteger),
        sa.Column("min", sa.Float),
        sa.Column("max", sa.Float),
        sa.Column("unit", sa.String(64)),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("start_time", _TIME),
        sa.Column("timestamp", _TIME, nullable=False),
        sa.Column("service_name", sa.String(255)),
        sa.Column("service_instance_id", sa.String(64)),
    )
    op.create_index(
        "ix_performance_metrics_name_time", "performance_metrics", ["name", "timestamp"]
    )
    op.create_index(
        "ix_performance_metrics_collector_time",
        "performance_metrics",
        ["collector_type", "timestamp"],
    )
    op.create_index("ix_performance_metrics_time", "performance_metrics", ["timestamp"])


def downgrade() -> None:
    op.drop_table("performance_metrics")
