"""What history holds about runs and passes, as read back for people and for rollback."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from reconciler.domain.run import RunKind, RunStatus


@dataclass(frozen=True, slots=True)
class PassRecord:
    """One target's pass within a run."""

    target: str
    environment: str
    status: RunStatus
    drift_count: int = 0
    drift_percent: float = 0.0
    observed_fingerprint: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    note: str | None = None  # why the pass ran as it did (a guard, a stopped wave)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run: one or more passes under one id, in one mode."""

    id: str
    kind: RunKind
    trigger: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    desired_version: str | None
    rollback_of: str | None = None
    error: str | None = None
    drift_count: int = 0
    action_counts: dict[str, int] = field(default_factory=dict)
    targets: int = 0


@dataclass(frozen=True, slots=True)
class TargetPass:
    """One of a target's passes, with the run it was part of (the target page's last passes)."""

    run_id: str
    kind: RunKind
    trigger: str
    started_at: datetime
    record: PassRecord
