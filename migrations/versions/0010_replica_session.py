"""Replicas record the advisory lock their heartbeat session holds, so that the others see at once that one died.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A replica of an older release writes neither: its leases lapse by its heartbeat alone, as before.
    op.add_column("replicas", sa.Column("session_lock", sa.Integer(), nullable=True))
    op.add_column("replicas", sa.Column("session_seen", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("session_seen")
        batch.drop_column("session_lock")
