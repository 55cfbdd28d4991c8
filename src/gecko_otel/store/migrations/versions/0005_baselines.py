"""Each collector's baseline, kept across restarts and shared between processes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "baselines",
        sa.Column("collector_type", sa.String(255), primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("records_center", sa.Float, nullable=False),
        sa.Column("records_spread", sa.Float, nullable=False),
        sa.Column("zero_share", sa.Float, nullable=False),
        sa.Column("duration_runs", sa.Integer, nullable=False),
        sa.Column("duration_center", sa.Float, nullable=False),
        sa.Column("duration_spread", sa.Float, nullable=False),
        sa.Column("last_records_at", _TIME),
        sa.Column("updated_by", sa.String(255)),
        sa.Column("updated_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("baselines")
