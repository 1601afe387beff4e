"""What the timeline and the export share: who acted in a run, values decoded, and the run columns they join."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from reconciler.domain.audit import EventKind
from reconciler.domain.values import from_json
from reconciler.store import tables as t

DAEMON = "reconciler (daemon)"

# The run columns every joined query reads, labelled so they never clash with the row's own.
RUN_COLUMNS = (
    t.runs.c.started_at.label("run_at"),
    t.runs.c.kind.label("run_kind"),
    t.runs.c.trigger.label("run_trigger"),
    t.runs.c.owner.label("run_owner"),
    t.runs.c.desired_version.label("run_version"),
    t.desired_versions.c.git_commit.label("git_commit"),
)


def with_runs(rows: sa.FromClause, run_id: sa.ColumnElement[Any]) -> sa.Join:
    """`rows` joined with their run and the run's desired version (for its git commit)."""
    return rows.join(t.runs, t.runs.c.id == run_id).outerjoin(
        t.desired_versions, t.desired_versions.c.digest == t.runs.c.desired_version
    )


def run_actor(trigger: str | None, owner: str | None) -> str:
    """Who ran a run: the daemon, or a command (cli, api) on a host; a person's name where history has one."""
    if trigger in (None, "schedule"):
        return DAEMON
    host = (owner or "").split(":", 1)[0]
    return f"{trigger}@{host}" if host else str(trigger)


def value(text: str | None) -> Any:
    """A stored value decoded: MISSING for SQL NULL, secrets stay Redacted."""
    return from_json(text)


def decision(state: str) -> EventKind:
    """The event an approval's decision is: one that was approved stays "approved" once used or expired."""
    if state == "rejected":
        return EventKind.REJECTED
    if state == "superseded":
        return EventKind.SUPERSEDED
    return EventKind.APPROVED


def action_end(state: str, rollback_of: str | None) -> EventKind | None:
    """The event of an action's final state; None for one that is still in flight or only planned."""
    if rollback_of is not None:
        return EventKind.ROLLED_BACK if state in ("applied", "verified") else _ENDS.get(state)
    return _ENDS.get(state)


_ENDS = {
    "verified": EventKind.VERIFIED,
    "failed": EventKind.FAILED,
    "conflict": EventKind.CONFLICT,
    "rolled_back": EventKind.ROLLED_BACK,
    "interrupted": EventKind.FAILED,
}
