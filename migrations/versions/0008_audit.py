"""Audit: one key's drift found by (target, path), and every change of the circuit breaker kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reconciler.store.tables import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (target, path) serves everything (target) did, so the narrower index goes.
    op.create_index("ix_drifts_target_path", "drifts", ["target", "path"])
    op.drop_index(op.f("ix_drifts_target"), table_name="drifts")
    op.create_table(
        "breaker_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("until", UtcDateTime(), nullable=True),
        sa.Column("changed_by", sa.String(200), nullable=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breaker_events")),
    )
    op.create_index(op.f("ix_breaker_events_at"), "breaker_events", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_breaker_events_at"), table_name="breaker_events")
    op.drop_table("breaker_events")
    op.create_index(op.f("ix_drifts_target"), "drifts", ["target"])
    op.drop_index("ix_drifts_target_path", table_name="drifts")
