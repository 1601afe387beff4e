"""Replicas say they are joining while they load the desired state.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A replica of an older release inserts no value: it counts as ready, which is what it is once it claims.
    op.add_column("replicas", sa.Column("joining", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("joining")
