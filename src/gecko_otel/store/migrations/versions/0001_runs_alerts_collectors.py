"""Runs, alerts and per-collector metadata.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "execution_history",
        sa.Column("id", _KEY, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(64), nullable=False, unique=True),
        sa.Column("collector_type", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", _TIME, nullable=False),
        sa.Column("end_time", _TIME),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("duration_bucket", sa.Integer),
        sa.Column("records_collected", sa.BigInteger, nullable=False),
        sa.Column("error_type", sa.String(255)),
        sa.Column("error_message", sa.Text),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("dropped_messages", sa.Integer, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(16)),
        sa.Column("service_name", sa.String(255)),
        sa.Column("service_instance_id", sa.String(64)),
    )
    op.create_index(
        "ix_execution_history_collector_start",
        "execution_history",
        [
            "collector_type",
            "start_time",
            "status",
            "duration_bucket",
            "duration_seconds",
            "records_collected",
        ],
    )
    op.create_index("ix_execution_history_start", "execution_history", ["start_time"])

    op.create_table(
        "system_alerts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("collector_type", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("fired_at", _TIME, nullable=False),
        sa.Column("last_notified_at", _TIME),
        sa.Column("notified_level", sa.String(16)),
        sa.Column("notifications", sa.Integer, nullable=False),
        sa.Column("acknowledged_at", _TIME),
        sa.Column("resolved_at", _TIME),
        sa.Column("suppressed", sa.Boolean, nullable=False),
        sa.Column("service_name", sa.String(255)),
        sa.Column("service_instance_id", sa.String(64)),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_index("ix_system_alerts_state", "system_alerts", ["state", "fired_at"])
    op.create_index("ix_system_alerts_collector", "system_alerts", ["collector_type", "fired_at"])
    op.create_index("ix_system_alerts_resolved", "system_alerts", ["resolved_at"])

    op.create_table(
        "collection_metadata",
        sa.Column("collector_type", sa.String(255), primary_key=True),
        sa.Column("first_run", _TIME),
        sa.Column("last_run", _TIME),
        sa.Column("last_status", sa.String(16)),
        sa.Column("last_success", _TIME),
        sa.Column("last_failure", _TIME),
        sa.Column("total_executions", sa.BigInteger, nullable=False),
        sa.Column("successful_executions", sa.BigInteger, nullable=False),
        sa.Column("failed_executions", sa.BigInteger, nullable=False),
        sa.Column("total_records", sa.BigInteger, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("health_status", sa.String(16)),
        sa.Column("health_score", sa.Float),
        sa.Column("service_name", sa.String(255)),
        sa.Column("updated_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("collection_metadata")
    op.drop_table("system_alerts")
    op.drop_table("execution_history")
