"""Resolve the actions a crashed run left in flight by looking at live state again.

An action left planned, staged or applied becomes verified when live holds its `after` (the write happened
before the crash), interrupted when live still holds its `before` (it did not; the next pass plans again),
and a conflict when live holds neither. Nothing is written to live here, so nothing can be applied twice;
what an interrupted commit left beside live (the file adapter's staged files) is removed.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.domain.manifest import Target
from reconciler.domain.paths import get_in
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.values import holds
from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import DiscoveryAdapter, HistoryStore, StagedSweeper
from reconciler.remediate import executor

log = logs.get_logger("reconciler.recovery")

APPLIED = "recovered: the write had happened before the run was interrupted"
NOT_APPLIED = "recovered: not written before the run was interrupted; the next pass plans again"
NEITHER = "recovered: live holds neither the expected value nor the new one"


def recover_target(
    target: Target, actions: Sequence[Action], adapter: DiscoveryAdapter, journal: HistoryStore, hmac_key: bytes
) -> list[Action]:
    """Settle one target's in-flight actions against live; returns them with their new states. Staged
    copies that the interrupted commit left beside live are removed first."""
    if isinstance(adapter, StagedSweeper):
        sweep(target, adapter)
    try:
        live = adapter.discover(target).document
    except ReconcilerError as exc:
        return settle(journal, [(a, ActionState.FAILED, f"recovered: live could not be read: {exc}") for a in actions])
    list_keys = target.list_keys()
    outcome = []
    for action in actions:
        value = get_in(live, action.path, list_keys)
        if holds(value, action.after, hmac_key):
            outcome.append((action, ActionState.VERIFIED, APPLIED))
        elif holds(value, action.before, hmac_key):
            outcome.append((action, ActionState.INTERRUPTED, NOT_APPLIED))
        else:
            outcome.append((action, ActionState.CONFLICT, NEITHER))
    return settle(journal, outcome)


def sweep(target: Target, adapter: StagedSweeper) -> None:
    """Remove what interrupted commits left for `target`; a failure is logged, never stops recovery."""
    try:
        removed = adapter.sweep_staged(target)
    except (ReconcilerError, OSError) as exc:
        log.warning("staged files not swept", target=target.name, error=str(exc))
        return
    if removed:
        log.info("staged files of an interrupted commit removed", target=target.name, removed=removed)


def settle_unknown(journal: HistoryStore, actions: Sequence[Action], why: str) -> list[Action]:
    """Actions whose target is gone: nothing can be checked, so they fail with the reason."""
    return settle(journal, [(a, ActionState.FAILED, f"recovered: {why}") for a in actions])


def settle(journal: HistoryStore, outcome: Sequence[tuple[Action, ActionState, str | None]]) -> list[Action]:
    """Record the states recovery found, for the actions still in flight: another recovery of the same run (a
    daemon's and a command's) may have settled some meanwhile, and its state stands."""
    return executor.settle(journal, outcome, journal.settle_in_flight)
