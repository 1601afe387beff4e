"""Turn classified drift into actions: one per reversible drift, guarded by what live holds now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.domain.approval import Approval, ApprovalState, drift_key
from reconciler.domain.drift import Classified
from reconciler.domain.ids import new_id
from reconciler.domain.manifest import DriftClass, DriftOp, Target
from reconciler.domain.paths import MISSING, get_in
from reconciler.domain.plan import Action


@dataclass
class TargetPlan:
    """What a pass would do for one target, and the drift it leaves alone (with why)."""

    target: str
    actions: list[Action] = field(default_factory=list)
    escalations: list[Classified] = field(default_factory=list)
    approved: dict[str, str] = field(default_factory=dict)  # action id -> approval id
    accepted: list[Classified] = field(default_factory=list)
    unpruned: list[Classified] = field(default_factory=list)


def plan(
    target: Target,
    classified: Iterable[Classified],
    desired: dict[str, Any],
    observed: dict[str, Any],
    *,
    run_id: str,
    desired_version: str,
    approvals: Mapping[str, Approval] | None = None,
) -> TargetPlan:
    """Plan the fixes of a target's reversible drift.

    `desired` is already normalised into the adapter's value domain, so an action's `after` is exactly what
    the adapter will write and verify. Values come from the documents, not from the drift items, because
    secret drift items carry only a keyed hash. Actions are ordered by path, so the same drift always gives
    the same plan. An escalation whose exact drift a person approved (`approvals`, by pointer) is planned
    like a reversible one, with the approval as its reason.
    """
    result = TargetPlan(target.name)
    list_keys = target.list_keys()
    for c in sorted(classified, key=lambda c: c.item.path):
        if c.class_ is DriftClass.ACCEPTABLE:
            result.accepted.append(c)
            continue
        pointer = c.item.pointer  # rendered once: the approvals' key and the action's own
        approval = approvals.get(pointer) if approvals else None
        reason = f"{c.reason} [{c.decided_by}]"
        if c.class_ is DriftClass.ESCALATE:
            if (
                approval is None
                or approval.state is not ApprovalState.APPROVED
                or approval.drift_key != drift_key(target.name, c.item)
            ):
                result.escalations.append(c)
                continue
            reason = f"approved by {approval.actor}: {approval.comment or 'no comment'} [approval {approval.id}]"
        # A person's approval of this exact drift is consent enough to delete a live-only key.
        if c.item.op is DriftOp.ADD and not target.spec.prune and c.class_ is not DriftClass.ESCALATE:
            result.unpruned.append(c)
            continue
        after = MISSING if c.item.op is DriftOp.ADD else get_in(desired, c.item.path, list_keys)
        result.actions.append(
            Action(
                id=new_id(),
                run_id=run_id,
                target=target.name,
                path=c.item.path,
                op=c.item.op,
                before=get_in(observed, c.item.path, list_keys),
                after=after,
                desired_version=desired_version,
                reason=reason,
                secret=c.item.secret,
                pointer=pointer,
            )
        )
        if c.class_ is DriftClass.ESCALATE and approval is not None:
            result.approved[result.actions[-1].id] = approval.id
    return result
