"""History as an audit trail: the events a key's timeline and an export are made of, and what a prune did.

One event type serves both, so the timeline a person reads and the export an audit tool ingests say the same
thing in the same words. Values are as history keeps them: secrets only as their keyed hash (`Redacted`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """What happened. The values are stable: exports and the web UI key on them."""

    RUN = "run"  # a run started (export only; a timeline names its run on each line)
    PASS = "pass"  # noqa: S105 - one target's pass within a run (export only)
    DRIFT = "drift"  # a drift row (export only; a timeline says seen/changed/gone instead)
    SEEN = "seen"  # first seen drifting (in a streak), with the desired version it was measured against
    CHANGED = "changed"  # still drifting, but live now holds another value
    CLASSIFIED = "classified"  # its class, and what decided it; again whenever that changes
    GONE = "gone"  # a recorded pass found no drift there any more
    ESCALATED = "escalated"  # a person was asked
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # an approval not used in time
    SUPERSEDED = "superseded"  # the drift an approval was for changed or went away
    ACTION = "action"  # export only: an action with its final state
    WRITTEN = "written"  # a fix was written (or would have been, in dry-run: see `state`)
    VERIFIED = "verified"
    FAILED = "failed"
    CONFLICT = "conflict"
    ROLLED_BACK = "rolled_back"  # undone: by verification, a health gate or a rollback run (see `reason`)
    ADOPTED = "adopted"  # live value written into the manifest
    BREAKER = "breaker"  # the circuit breaker opened or closed


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of a timeline, one record of an export. Field names are stable (see EXPORT_FIELDS)."""

    at: datetime
    event: EventKind
    actor: str  # who: a person, "reconciler (daemon)", "cli@host", "error budget"
    target: str | None = None
    path: str | None = None
    run_id: str | None = None
    id: str | None = None  # the row's own id: a run, drift, action or approval id
    environment: str | None = None
    run_kind: str | None = None  # dry-run, apply or rollback: the run this happened in
    op: str | None = None
    class_: str | None = None
    state: str | None = None
    desired: Any = None  # JSON-able value as history keeps it; secrets a Redacted
    observed: Any = None
    before: Any = None
    after: Any = None
    reason: str | None = None
    comment: str | None = None
    desired_version: str | None = None
    git_commit: str | None = None
    error: str | None = None
    secret: bool = False
    decided_by: str | None = None  # what classified a drift: "rule default/2", "exception default/0", "default"
    rollback_of: str | None = None  # the run or action this undoes
    drift_count: int | None = None  # a pass's drift items


# The export's columns, in order: renaming one breaks every audit tool that reads exports.
EXPORT_FIELDS: tuple[str, ...] = tuple("class" if f.name == "class_" else f.name for f in fields(AuditEvent))


@dataclass(frozen=True, slots=True)
class PruneStats:
    """What one prune deleted (or, dry, would delete), and how long it held the database at most."""

    cutoff: datetime
    dry_run: bool
    deleted: dict[str, int]  # rows by table
    kept_runs: int  # runs older than the cutoff that something still needs
    seconds: float
    longest_lock_s: float  # the longest single deleting transaction
    batches: int
    skipped: str | None = None  # why nothing was done (another replica is pruning)

    @property
    def rows(self) -> int:
        return sum(self.deleted.values())
