"""The daemon's rolling blast-radius window and the progressive rollout of desired versions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from reconciler.store.tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "safety_window",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("actions", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_window")),
    )
    op.create_index(op.f("ix_safety_window_at"), "safety_window", ["at"])
    op.create_table(
        "rollouts",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("held_wave", sa.Integer(), nullable=True),
        sa.Column("held_reason", sa.Text(), nullable=True),
        sa.Column("held_at", UtcDateTime(), nullable=True),
        sa.Column("released_by", sa.String(200), nullable=True),
        sa.Column("released_at", UtcDateTime(), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rollouts")),
    )
    op.create_index(op.f("ix_rollouts_started_at"), "rollouts", ["started_at"])
    op.create_table(
        "rollout_targets",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("version", "target", name=op.f("pk_rollout_targets")),
    )


def downgrade() -> None:
    op.drop_table("rollout_targets")
    op.drop_index(op.f("ix_rollouts_started_at"), table_name="rollouts")
    op.drop_table("rollouts")
    op.drop_index(op.f("ix_safety_window_at"), table_name="safety_window")
    op.drop_table("safety_window")
