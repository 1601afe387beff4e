"""Another run's write in flight on a target holds this run's writes to it.

An action journaled ahead of a write stays in flight until its run settles it, or until recovery settles it
against live once its process is known to be gone. A pass that wrote to the target meanwhile would make that
settling wrong: recovery would find the pass's fix in live and record the gone run's action as written too,
one fix journaled twice and its rollback undoing it twice. And while the other run lives, two writers would
fight over the target. So a pass that would write asks first, and waits while such an action is in flight.

Waiting is right only where something will end the wait: the other run's process is alive here and finishes
its write, or its death can be known (a process of this host, a replica in the lease table) and recovery then
settles it. A run of another host that is no replica (a one-shot command elsewhere) can neither be watched nor
settled from here; its action does not hold the target, as before, and the log says so.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.engine import process
from reconciler.observe import logging as logs
from reconciler.ports import HistoryStore, LeaseStore

log = logs.get_logger("reconciler.gate")

# Whether a run's owner is one whose end can be known here: a process of this host (alive or not), or a replica
# the lease table knows (alive, or dead and not yet forgotten, which happens only once its runs are settled).
Accounted = Callable[[str | None], bool]


def this_host(owner: str | None) -> bool:
    return process.alive(owner) is not None


def accounted_by(leases: LeaseStore) -> Accounted:
    """A process of this host, or a replica `leases` knows."""

    def accounted(owner: str | None) -> bool:
        return this_host(owner) or (owner is not None and leases.replica(owner))

    return accounted


class Unsettled:
    """The check a write makes before it starts (the gate's `admit`)."""

    def __init__(self, store: HistoryStore, accounted: Accounted = this_host) -> None:
        self.store = store
        self.accounted = accounted

    def why(self, target: str, run_id: str) -> str | None:
        """Why `target`'s writes in run `run_id` must wait (another run's action on it is in flight), or None.
        The store's errors reach the caller: a write whose journal cannot be checked is not made."""
        waiting = []
        for run, owner in self.store.writes_in_flight(target, run_id):
            if self.accounted(owner):
                waiting.append((run, owner))
                continue
            log.warning(
                "a run of another host left an action in flight on this target; it cannot be settled here",
                target=target,
                run_id=run,
                owner=owner,
            )
        if not waiting:
            return None
        run, owner = waiting[0]
        alive = process.alive(owner)
        state = "whose process is gone" if alive is False else "still running" if alive else "a replica's"
        return (
            f"run {run} ({owner}, {state}) has an action in flight on {target}; "
            "writes wait until it is settled (its run ends it, or recovery once its process is gone)"
        )
