"""Execute one target's actions through its adapter: journal, stage, commit, verify, roll back on failure.

Every action is written to the journal as planned before anything changes, then moves through
staged → applied → verified, or ends noop, conflict, failed or rolled_back. Dry-run goes the same way down
to the adapter's stage and stops before the write.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.domain.manifest import Target
from reconciler.domain.paths import get_in
from reconciler.domain.plan import Action, ActionState, failed_after_write
from reconciler.domain.values import holds
from reconciler.errors import ConflictError, ReconcilerError
from reconciler.ports import Adapter, Change, ChangeResult, Journal, Staged


@dataclass
class Execution:
    """What executing one target's actions did."""

    actions: list[Action] = field(default_factory=list)  # final states, rollback actions included
    rolled_back: bool = False
    error: str | None = None


def execute(
    target: Target,
    actions: Sequence[Action],
    adapter: Adapter,
    journal: Journal,
    *,
    dry_run: bool,
    gate: Callable[[], str | None] | None = None,
    hmac_key: bytes | None = None,
) -> Execution:
    """Apply `actions` to `target`; when verification or the health gate fails, roll back what this call wrote.
    `hmac_key` is the key of the journal's hashes: actions that carry a secret only as its keyed hash (a
    rollback of secrets, from the journal) are verified by it."""
    result = Execution()
    if not actions:
        return result
    if dry_run:
        result.actions.extend(_dry_run(target, list(actions), adapter, journal))
        return result
    journal.record_actions(actions)
    done = _write(target, list(actions), adapter, journal, dry_run=False, key=hmac_key)
    wrote_cleanly = any(a.state is ActionState.VERIFIED for a in done) and not any(
        a.state is ActionState.FAILED for a in done
    )
    if gate is not None and not dry_run and wrote_cleanly and (why := gate()) is not None:
        error = f"health gate: {why}"
        verified = [a.id for a in done if a.state is ActionState.VERIFIED]
        journal.update_actions(verified, ActionState.FAILED, error)
        done = [a.with_state(ActionState.FAILED, error) if a.state is ActionState.VERIFIED else a for a in done]
    result.actions.extend(done)
    failed = [a for a in done if a.state is ActionState.FAILED]
    written = [a for a in done if a.state in (ActionState.VERIFIED, ActionState.APPLIED) or failed_after_write(a)]
    if failed and written:
        result.error = failed[0].error
        reverse = [reverse_of(a, reason=f"automatic rollback: {failed[0].error}") for a in reversed(written)]
        journal.record_actions(reverse)
        undone = _write(target, reverse, adapter, journal, dry_run=False, key=hmac_key)
        result.actions.extend(undone)
        ok = {a.rollback_of for a in undone if a.state in (ActionState.VERIFIED, ActionState.NOOP)}
        journal.update_actions([i for i in ok if i], ActionState.ROLLED_BACK, f"rolled back: {result.error}")
        result.actions = [
            a.with_state(ActionState.ROLLED_BACK, f"rolled back: {result.error}") if a.id in ok else a
            for a in result.actions
        ]
        result.rolled_back = bool(ok)
        if len(ok) < len(reverse):
            result.error = f"{result.error}; automatic rollback incomplete"
    elif failed:
        result.error = failed[0].error
    return result


def reverse_of(action: Action, *, reason: str, run_id: str | None = None) -> Action:
    """The action that puts back what `action` replaced, guarded by what `action` wrote."""
    return action._replace(
        id=str(uuid.uuid4()),
        run_id=run_id or action.run_id,
        before=action.after,
        after=action.before,
        reason=reason,
        rollback_of=action.id,
        state=ActionState.PLANNED,
        error=None,
        idempotency_key="",
    )


def _stage(
    target: Target, actions: list[Action], adapter: Adapter, *, dry_run: bool
) -> tuple[Staged | None, list[tuple[Action, ActionState, str | None]]]:
    """Stage the actions' changes: what the adapter staged (None when staging failed), and each action's state."""
    changes = [Change(a.path, a.before, a.after) for a in actions]
    try:
        staged = adapter.stage(target, changes, dry_run=dry_run)
    except ReconcilerError as exc:
        return None, [(a, ActionState.FAILED, f"stage: {exc}") for a in actions]
    outcome: list[tuple[Action, ActionState, str | None]] = []
    for action, found, message in zip(actions, staged.results, staged.messages, strict=True):
        if found is ChangeResult.NOOP:
            outcome.append((action, ActionState.NOOP, message))
        elif found is ChangeResult.CONFLICT:
            outcome.append((action, ActionState.CONFLICT, message))
        else:
            outcome.append((action, ActionState.DRY_RUN if dry_run else ActionState.STAGED, None))
    return staged, outcome


def _dry_run(target: Target, actions: list[Action], adapter: Adapter, journal: Journal) -> list[Action]:
    """Dry-run goes down to the adapter's stage and stops before the write. Nothing changes, so nothing needs
    journaling ahead: each action is journaled once, in the state staging found."""
    staged, outcome = _stage(target, actions, adapter, dry_run=True)
    if staged is not None:
        adapter.discard(staged)
    done = [action.with_state(state, error) for action, state, error in outcome]
    journal.record_actions(done)
    return done


def _write(
    target: Target, actions: list[Action], adapter: Adapter, journal: Journal, *, dry_run: bool, key: bytes | None
) -> list[Action]:
    staged, outcome = _stage(target, actions, adapter, dry_run=dry_run)
    if staged is None:
        return settle(journal, outcome)
    settled = settle(journal, outcome)
    to_commit = [a for a in settled if a.state is ActionState.STAGED]
    if dry_run or not to_commit:
        adapter.discard(staged)
        return settled
    try:
        adapter.commit(staged)
    except ConflictError as exc:  # live changed between stage and commit: nothing written
        return _merge(settled, _raced(target, to_commit, adapter, journal, str(exc), key))
    except ReconcilerError as exc:
        return _merge(settled, settle(journal, [(a, ActionState.FAILED, f"commit: {exc}") for a in to_commit]))
    applied = settle(journal, [(a, ActionState.APPLIED, None) for a in to_commit])
    return _merge(settled, _verify(target, applied, adapter, journal, key))


def _raced(
    target: Target, actions: list[Action], adapter: Adapter, journal: Journal, why: str, key: bytes | None
) -> list[Action]:
    """Another writer changed live between stage and commit. Where it wrote exactly what this action would
    have, the action is a noop (nothing to do, nothing drifts); elsewhere a conflict: the next pass plans again."""
    try:
        observed = adapter.discover(target).document
    except ReconcilerError:
        return settle(journal, [(a, ActionState.CONFLICT, why) for a in actions])
    list_keys = target.list_keys()
    raced = "another writer wrote the same value first"
    outcome = [
        (a, ActionState.NOOP, raced)
        if holds(get_in(observed, a.path, list_keys), a.after, key)
        else (a, ActionState.CONFLICT, why)
        for a in actions
    ]
    return settle(journal, outcome)


def _verify(
    target: Target, applied: list[Action], adapter: Adapter, journal: Journal, key: bytes | None
) -> list[Action]:
    """Read live again and check that every applied action's path now holds its `after`."""
    try:
        observed = adapter.discover(target).document
    except ReconcilerError as exc:
        return settle(journal, [(a, ActionState.FAILED, f"verify: cannot re-read: {exc}") for a in applied])
    list_keys = target.list_keys()
    outcome: list[tuple[Action, ActionState, str | None]] = []
    for action in applied:
        live = get_in(observed, action.path, list_keys)
        if holds(live, action.after, key):
            outcome.append((action, ActionState.VERIFIED, None))
        else:
            outcome.append((action, ActionState.FAILED, "verify: live does not hold the written value"))
    return settle(journal, outcome)


def settle(
    journal: Journal,
    outcome: Sequence[tuple[Action, ActionState, str | None]],
    update: Callable[[Sequence[str], ActionState, str | None], None] | None = None,
) -> list[Action]:
    """Record new states in bulk: one journal update per (state, error), through `update` if given (recovery's
    update of the actions still in flight) or the journal's own."""
    groups: dict[tuple[ActionState, str | None], list[str]] = defaultdict(list)
    for action, state, error in outcome:
        groups[(state, error)].append(action.id)
    for (state, error), ids in groups.items():
        (update or journal.update_actions)(ids, state, error)
    return [action.with_state(state, error) for action, state, error in outcome]


def _merge(base: list[Action], updates: list[Action]) -> list[Action]:
    by_id = {a.id: a for a in updates}
    return [by_id.get(a.id, a) for a in base]
