"""Runs record the process that owns them, so that a crashed run's in-flight actions can be recovered;
passes get a note (why a pass ran dry-run: a guard, a stopped wave).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=True))
    op.create_index(op.f("ix_runs_status"), "runs", ["status"])
    with op.batch_alter_table("passes") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passes") as batch:
        batch.drop_column("note")
    op.drop_index(op.f("ix_runs_status"), table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("owner")
