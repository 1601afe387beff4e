"""Undo what a run wrote: re-apply each action's `before`, newest first, with the same compare-and-swap
guard (live must still hold what the run wrote), as new journaled actions of a new run.

The journal keeps a secret only as its keyed hash, so a secret's change is reversed only where the adapter
can find the value again in the live system's own history (capabilities.secret_history), and is refused
elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.domain.manifest import Target
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.values import Redacted
from reconciler.ports import Adapter, Capabilities, Journal
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
    undone: list[Action] = field(default_factory=list)  # rolled back already, by an earlier rollback


def plan_rollback(
    originals: Sequence[Action],
    *,
    run_id: str,
    of_run: str,
    known_targets: Mapping[str, Target],
    capabilities: Callable[[Target], Capabilities] | None = None,
) -> RollbackPlan:
    """Reverse actions for every action of `of_run` that wrote (applied or verified), newest first. A secret's
    change is reversed where the target's adapter (its `capabilities`) keeps a history of secret values."""
    result = RollbackPlan()
    for action in reversed(originals):
        if action.state is ActionState.ROLLED_BACK:
            result.undone.append(action)
        if not action.state.wrote:
            continue
        target = known_targets.get(action.target)
        if target is None:
            result.refused.append(Refusal(action, f"target {action.target} is no longer in the desired state"))
            continue
        secret = isinstance(action.before, Redacted) or isinstance(action.after, Redacted)
        if secret and (capabilities is None or not capabilities(target).secret_history):
            result.refused.append(Refusal(action, _no_history(target)))
            continue
        reverse = reverse_of(action, reason=f"rollback of run {of_run}", run_id=run_id)
        result.by_target.setdefault(action.target, []).append(reverse)
    return result


def _no_history(target: Target) -> str:
    return (
        "secret values are not kept in history, and the "
        f"{target.spec.source.adapter} adapter's live system keeps no earlier values to find them in, so this "
        "change cannot be reversed; set the value by hand or re-apply the desired state"
    )


def rollback(
    target: Target,
    reverse: Sequence[Action],
    adapter: Adapter,
    journal: Journal,
    *,
    dry_run: bool,
    hmac_key: bytes | None = None,
) -> Execution:
    """Execute the reverse actions of one target; mark the originals rolled back where that held. `hmac_key`
    (of the journal's hashes) verifies the secrets put back."""
    execution = execute(target, reverse, adapter, journal, dry_run=dry_run, hmac_key=hmac_key)
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
