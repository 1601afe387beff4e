"""What a pass and a run end with: frozen values, built once at the end and read by observers and renderers.

What happens after a pass is decided from its outcome alone, in one place (the daemon's switch): `retry` (a
temporary error: a rate-limited retry, or after `requeue_after_s` when the error said when), or done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.domain.approval import Approval
from reconciler.domain.drift import Classified, Comparison
from reconciler.domain.manifest import Target
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.engine.gate import ModeDecision
from reconciler.remediate.executor import Execution
from reconciler.remediate.planner import TargetPlan
from reconciler.remediate.rollback import Refusal


@dataclass(frozen=True, slots=True)
class PassOutcome:
    """What one pass found and did for one target."""

    target: Target
    decision: ModeDecision  # the mode it ran in, and what held it back from writing
    status: RunStatus = RunStatus.CLEAN
    comparison: Comparison | None = None
    classified: tuple[Classified, ...] = ()
    plan: TargetPlan | None = None
    execution: Execution | None = None
    error: str | None = None
    error_type: str | None = None  # the exception that failed the pass (an adapter's, the store's), if one did
    retry: bool = False  # a temporary error: try the pass again with backoff
    requeue_after_s: float | None = None  # ... after this long, when the error said when
    duration_s: float = 0.0
    fingerprint: str | None = None
    unchanged: bool = False  # nothing changed since the last good pass: no work, nothing recorded
    approvals: Mapping[str, Approval] = field(default_factory=dict)  # the target's approvals, by pointer
    new_escalations: tuple[Approval, ...] = ()  # approvals this pass raised: each is announced once
    flapped: tuple[str, ...] = ()  # pointers escalated because another writer keeps changing them
    layers: Mapping[str, list[tuple[str, Any]]] | None = None  # a layered source's values per pointer, winner last
    degraded: bool = False  # the store could not be asked (flapping, approvals): look in full once it is back
    live_now: Mapping[str, Any] | None = None  # a rollback: live's value at each path it touched, read after it

    @property
    def mode(self) -> Mode:
        return self.decision.mode

    @property
    def note(self) -> str | None:
        """Why the pass ran as it did, when something held its writes back."""
        return self.decision.why

    @property
    def wrote(self) -> bool:
        return self.execution is not None and any(a.state.wrote for a in self.execution.actions)

    @property
    def failed_write(self) -> str | None:
        """Why its writes failed or were rolled back, or None."""
        execution = self.execution
        if execution is None or not (execution.rolled_back or execution.error):
            return None
        return execution.error or "rolled back"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A run: its id, kind, the desired version it measured against, and one outcome per target."""

    run_id: str
    kind: RunKind
    desired_version: str
    targets: tuple[PassOutcome, ...]
    refused: tuple[Refusal, ...] = ()
    recorded: bool = False  # whether history holds this run (a run of unchanged passes writes nothing)
    notes: tuple[str, ...] = ()  # for people, about the run as a whole (a rollback: what was undone before)

    @property
    def status(self) -> RunStatus:
        statuses = [t.status for t in self.targets]
        if self.refused:
            statuses.append(RunStatus.FAILED)
        return RunStatus.worst(statuses)
