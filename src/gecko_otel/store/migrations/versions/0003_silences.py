"""Silences set from the command line, shared by every Monitor on the store.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("collector_type", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(255)),
        sa.Column("starts_at", _TIME, nullable=False),
        sa.Column("ends_at", _TIME, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("ended_at", _TIME),
    )
    op.create_index("ix_silences_ends", "silences", ["ended_at", "ends_at"])


def downgrade() -> None:
    op.drop_table("silences")
