"""Undo what a run wrote: re-apply each action's `before`, newest first, with the same compare-and-swap
guard (live must still hold what the run wrote), as new journaled actions of a new run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler.domain.manifest import Target
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.values import Redacted
from reconciler.ports import Adapter, Journal
from reconciler.remediate.executor import Execution, execute, reverse_of


@dataclass
class Refusal:
    action: Action
    reason: str


@dataclass
class RollbackPlan:
    """The reverse actions of a run, by target, and the actions that cannot be reversed (with why)."""

    by_target: dict[str, list[Action]] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)


def plan_rollback(originals: Sequence[Action], *, run_id: str, of_run: str, known_targets: set[str]) -> RollbackPlan:
    """Reverse actions for every action of `of_run` that wrote (applied or verified), newest first."""
    result = RollbackPlan()
    for action in reversed(originals):
        if not action.state.wrote:
            continue
        if action.target not in known_targets:
            result.refused.append(Refusal(action, f"target {action.target} is no longer in the desired state"))
            continue
        if isinstance(action.before, Redacted) or isinstance(action.after, Redacted):
            result.refused.append(
                Refusal(
                    action,
                    "secret values are not kept in history, so this change cannot be reversed; "
                    "set the value by hand or re-apply the desired state",
                )
            )
            continue
        reverse = reverse_of(action, reason=f"rollback of run {of_run}", run_id=run_id)
        result.by_target.setdefault(action.target, []).append(reverse)
    return result


def rollback(
    target: Target, reverse: Sequence[Action], adapter: Adapter, journal: Journal, *, dry_run: bool
) -> Execution:
    """Execute the reverse actions of one target; mark the originals rolled back where that held."""
    execution = execute(target, reverse, adapter, journal, dry_run=dry_run)
    if dry_run:
        return execution
    ours = {a.id for a in reverse}
    undone = [
        a.rollback_of
        for a in execution.actions
        if a.id in ours and a.rollback_of and a.state in (ActionState.VERIFIED, ActionState.NOOP)
    ]
    journal.update_actions([i for i in undone if i], ActionState.ROLLED_BACK, "rolled back")
    return execution
