"""The history tables. Alembic migrations in migrations/versions create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, whatever the backend keeps (SQLite keeps naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


desired_versions = sa.Table(
    "desired_versions",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("git_commit", sa.String(64), nullable=True),
    sa.Column("git_dirty", sa.Boolean, nullable=False, default=False),
    sa.Column("root", sa.Text, nullable=False),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("started_at", UtcDateTime, nullable=False, index=True),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("desired_version", sa.String(64), sa.ForeignKey("desired_versions.digest"), nullable=True),
    sa.Column("rollback_of", sa.String(36), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # host:pid:start-ticks of the process that ran it; recovery touches only runs whose owner is gone
    sa.Column("owner", sa.String(200), nullable=True),
)

passes = sa.Table(
    "passes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("environment", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("drift_count", sa.Integer, nullable=False),
    sa.Column("drift_percent", sa.Float, nullable=False),
    sa.Column("observed_fingerprint", sa.String(64), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
)

drifts = sa.Table(
    "drifts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("class", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=False),
    # JSON text; NULL means the key is missing on that side (JSON null is the text 'null').
    sa.Column("desired", sa.Text, nullable=True),
    sa.Column("observed", sa.Text, nullable=True),
    sa.Column("secret", sa.Boolean, nullable=False),
    # one key's story (`reconciler history --target T --path P`) without reading the target's other keys
    sa.Index("ix_drifts_target_path", "target", "path"),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),
    sa.Column("desired_version", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(64), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("secret", sa.Boolean, nullable=False),
    sa.Column("rollback_of", sa.String(36), nullable=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # sha256 of target, path, op and both values (keyed hashes for secrets): the exact drift approved
    sa.Column("drift_key", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("environment", sa.String(100), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("desired", sa.Text, nullable=True),
    sa.Column("observed", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("action_id", sa.String(36), nullable=True),
)

breakers = sa.Table(
    "breakers",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # open or closed
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("opened_at", UtcDateTime, nullable=True),
    sa.Column("until", UtcDateTime, nullable=True),  # when an open breaker closes by itself
    sa.Column("changed_by", sa.String(200), nullable=True),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)

# Every change of the breaker, for the audit trail (the `breakers` row holds only the state now).
breaker_events = sa.Table(
    "breaker_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("until", UtcDateTime, nullable=True),
    sa.Column("changed_by", sa.String(200), nullable=True),
    sa.Column("at", UtcDateTime, nullable=False, index=True),
)

adoptions = sa.Table(
    "adoptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("drift_id", sa.Integer, nullable=False),
    sa.Column("target", sa.String(200), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("value", sa.Text, nullable=True),  # JSON of the adopted live value; NULL: the key was unset
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),  # the daemon's run owner: host:pid:start-ticks
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
    # True while it loads the desired state: the others leave it its share of the free targets (leases.py)
    sa.Column("joining", sa.Boolean, nullable=False, server_default=sa.false()),
    # PostgreSQL: the advisory lock its own session holds while it lives, and the server's time at its last
    # heartbeat; the others take its leases as soon as that lock is gone (leases.py). NULL: it holds none.
    sa.Column("session_lock", sa.Integer, nullable=True),
    sa.Column("session_seen", UtcDateTime, nullable=True),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),  # a target, or "housekeeping"
    sa.Column("owner", sa.String(200), nullable=False, index=True),
    sa.Column("acquired_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

# The daemon's rolling blast-radius window: the writes each pass entered before making them.
safety_window = sa.Table(
    "safety_window",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False, index=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("actions", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
)

# Progressive rollout of each desired version: its hold, and where each target is.
rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("started_at", UtcDateTime, nullable=False, index=True),  # when the version (last) came into force
    sa.Column("completed_at", UtcDateTime, nullable=True),  # every wave open: later drift is fixed without waves
    sa.Column("held_wave", sa.Integer, nullable=True),  # every later wave is held
    sa.Column("held_reason", sa.Text, nullable=True),
    sa.Column("held_at", UtcDateTime, nullable=True),
    sa.Column("released_by", sa.String(200), nullable=True),
    sa.Column("released_at", UtcDateTime, nullable=True),
    sa.Column("release_reason", sa.Text, nullable=True),
)

rollout_targets = sa.Table(
    "rollout_targets",
    metadata,
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(200), primary_key=True),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending, done, failed, released
    sa.Column("at", UtcDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)
