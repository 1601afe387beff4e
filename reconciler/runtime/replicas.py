"""Replicas: several daemons on one PostgreSQL database share the targets through leases (store/leases.py).

Each replica heartbeats and claims its fair share of targets every third of the lease time, and once more
just after another replica's leases would lapse (while it loads the desired state, it heartbeats as joining,
and the others leave it its share of the free targets); a target it newly holds is queued at once, so the targets
of a replica that died are leased again within one lease time of its death (set it at or below the shortest
interval). On PostgreSQL a replica that dies is usually seen sooner: its heartbeat session's lock goes with its
process, every replica looks for such departures every DEPARTURES_S, and claims at once when one departed.
A pass runs only on the replica holding the target's lease, and only with the target's advisory lock. A
replica that takes a dead replica's target settles what the dead one left in flight on it before passing it
(a departed one's, once its heartbeat has lapsed too); one replica, the holder of the housekeeping lease,
settles the rest and forgets replicas that died. On SQLite (one daemon) every target is this daemon's.

A replica that cannot reach the database cannot renew its leases, and after a lease time another replica may
take its targets. It goes on *looking* at the targets it last held (detection never stops with the store) but
writes nothing until a tick has renewed its leases: a read done twice is harmless, a write done twice is not.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from reconciler.engine import process
from reconciler.engine.run import Reconciler
from reconciler.errors import ReconcilerError, StoreUnavailable
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.ports import LeaseStore
from reconciler.runtime import undo

log = logs.get_logger("reconciler.replicas")
LAPSE_MARGIN = timedelta(seconds=0.5)  # after another replica's leases would lapse: they have, if it is dead
AGAIN = timedelta(seconds=1)  # until the next claim, when one fell short while taking leases
DEPARTURES_S = 2.0  # how often a replica looks whether another one's session ended (departures())


@dataclass(frozen=True, slots=True)
class Access:
    """What this replica may do with a target now: nothing (another holds it), or run its pass; `cut_off` says
    why the pass may look but not write (the store is unreachable, so the lease is not known to be held)."""

    run: bool
    cut_off: str | None = None


NONE = Access(False)
RUN = Access(True)


class BatchAccess:
    """What each of a batch's passes may do, their locks taken together (Replicas.exclusive_all). A pass asks
    as it starts, which reads its lease and the store's cut-off again (a tick since the batch began may have
    lost either), and gives its lock back as it ends: a target given away meanwhile waits for that pass, not for
    the whole batch."""

    def __init__(self, replicas: Replicas, access: dict[str, Access], release: Callable[[str], None]) -> None:
        self._replicas, self._access, self._release = replicas, access, release

    def start(self, target: str) -> Access:
        access = self._access.get(target, NONE)
        if not access.run or not self._replicas.owns(target):
            return NONE
        cut_off = self._replicas.cut_off
        return Access(True, cut_off) if cut_off is not None and access.cut_off is None else access

    def done(self, target: str) -> None:
        self._release(target)


class Replicas:
    def __init__(
        self,
        leases: LeaseStore,
        engine: Reconciler,
        metrics: Metrics,
        *,
        ttl_s: float,
        wake: Callable[[str], None],
        moved: Callable[[set[str], set[str]], None] = lambda _held, _lost: None,
        owner: str | None = None,
    ) -> None:
        self.leases = leases
        self.engine = engine
        self.metrics = metrics
        self.ttl = timedelta(seconds=ttl_s)
        self.wake = wake  # queues a target this replica has just taken
        self.moved = moved  # with the targets held now and those lost: what is shown and watched follows
        self.owner = owner or process.identity()
        self.shared = leases.shared
        self._held: set[str] = set()
        self._cut_off: str | None = None  # why the last tick could not renew the leases, until one does
        self._departed: frozenset[str] = frozenset()  # the departed replicas departures() saw last
        self._lock = threading.Lock()
        if self.shared:  # the metrics show the targets this replica leases, none before its first claim
            metrics.target_states.hold(set())

    def owns(self, target: str) -> bool:
        if not self.shared:
            return True
        with self._lock:
            return target in self._held

    @property
    def cut_off(self) -> str | None:
        """Why this replica may not write now: its last tick could not renew its leases."""
        return self._cut_off

    def may_look(self, target: str) -> bool:
        """Whether this replica may pass `target` without writing (an unchanged pass): it holds the lease, and
        its last tick could renew its leases."""
        return self._cut_off is None and self.owns(target)

    @contextmanager
    def exclusive_all(self, targets: Sequence[str]) -> Iterator[BatchAccess]:
        """Whether each of a batch's passes may run now, and write: this replica holds its lease and its advisory
        lock (cut off from the store, it may look at the targets it last held, without writing). The locks are
        taken in one statement on one connection, where a lock of each pass cost four round trips and half of
        a first pass's CPU (docs/benchmarks.md). Each pass asks the BatchAccess as it starts and gives its lock
        back as it ends."""
        if self._cut_off is not None:
            yield BatchAccess(self, dict.fromkeys(targets, Access(True, self._cut_off)), lambda _: None)
            return
        ours = [name for name in targets if self.owns(name)]
        with contextlib.ExitStack() as stack:
            try:
                free, release = stack.enter_context(self.leases.exclusive_all(ours))
            except StoreUnavailable as exc:
                why = f"the advisory locks of its batch cannot be taken: {exc}"
                yield BatchAccess(self, dict.fromkeys(ours, Access(True, why)), lambda _: None)
                return
            yield BatchAccess(self, dict.fromkeys(free, RUN), release)

    def tick(self, targets: Collection[str]) -> datetime | None:
        """Heartbeat, claim this replica's share, and (as housekeeper) settle dead replicas' runs. Returns when
        to tick again, if sooner than the next regular tick might be: just after another replica's leases would
        lapse (it may have died: its targets are then taken within one lease time of its death), or in a moment
        when this claim fell short of the share while taking leases (another replica was taking them too)."""
        if not self.shared:
            self.metrics.replicas.set(1)
            self.metrics.leased_targets.set(len(targets))
            return None
        now = datetime.now(UTC)
        try:
            alive = self.leases.heartbeat(self.owner, now, self.ttl)
            joining = self.leases.joining(self.owner, now, self.ttl)
            held = self.leases.claim(self.owner, targets, now, self.ttl, alive, joining)
            housekeeper = self.leases.housekeeper(self.owner, now, self.ttl)
            lapse = self.leases.next_lapse(self.owner, now, self.ttl)
        except ReconcilerError as exc:
            # Leases this replica cannot renew expire: it writes nothing (another replica may take its targets),
            # and looks at the targets it held until a tick renews them.
            if self._cut_off is None:
                log.error("leases could not be renewed; detection only until they can", error=str(exc))
            self._cut_off = f"this replica cannot renew its leases: {exc}"
            self.metrics.leased_targets.set(0)
            return None
        self._cut_off = None
        with self._lock:
            taken = held - self._held
        if taken:
            held = held - self.settle_taken(taken, now)
        with self._lock:
            new, lost = held - self._held, self._held - held
            self._held = held
        self.metrics.replicas.set(alive)
        self.metrics.leased_targets.set(len(held))
        if new or lost:
            log.info("leases changed", replicas=alive, held=len(held), taken=len(new), released=len(lost))
            self.metrics.target_states.hold(held)
            self.moved(held, lost)
        for name in sorted(new):
            self.wake(name)
        if housekeeper:
            self.housekeeping(now)
        soon = [lapse + LAPSE_MARGIN] if lapse is not None else []
        if new and len(held) < math.ceil(len(targets) / max(alive + joining, 1)):
            soon.append(now + AGAIN)
        return min(soon, default=None)

    def departures(self) -> bool:
        """Whether another replica departed since the last look: its session ended (it was killed), though its
        heartbeat has not lapsed. The daemon then ticks at once, which takes its targets within a few seconds
        of its death instead of a lease time. One small query, every DEPARTURES_S; a store that fails it is
        reported by the ticks."""
        if not self.shared:
            return False
        try:
            gone = frozenset(self.leases.departed(self.owner, datetime.now(UTC), self.ttl))
        except ReconcilerError:
            return False
        new, self._departed = gone - self._departed, gone
        if new:
            log.warning("replicas departed: their sessions ended; their targets are taken over", replicas=sorted(new))
        return bool(new)

    @contextmanager
    def joining(self) -> Iterator[None]:
        """While this replica loads the desired state (minutes, at 100,000 targets): heartbeat as joining, every
        third of a lease time, so that the replicas loaded meanwhile take only their share of the free targets
        and keep theirs until this one takes its own, at its first tick (store/leases.py)."""
        if not self.shared:
            yield
            return
        done = threading.Event()
        every = self.ttl.total_seconds() / 3

        def beat() -> None:
            while True:
                try:
                    self.leases.heartbeat(self.owner, datetime.now(UTC), self.ttl, joining=True)
                except ReconcilerError as exc:  # the others then share the targets without this one, as before
                    log.warning("joining heartbeat failed", error=str(exc))
                if done.wait(every):
                    return

        beats = threading.Thread(target=beat, name="joining", daemon=True)
        beats.start()
        try:
            yield
        finally:
            done.set()
            beats.join()

    def settle_taken(self, taken: set[str], now: datetime) -> set[str]:
        """Settle what dead replicas left in flight on targets this replica has just leased, before it passes
        them. A pass first could fix such a target, and the settling would then find the fix in live and record
        the dead replica's action as written: one fix journaled twice, and its rollback undoing it twice. Returns
        the targets not to hold yet: those whose lock was busy (being settled elsewhere, or a lock of another
        name that hashes alike), those a departed replica (its session ended, its heartbeat not yet lapsed) left
        in flight, which are settled once it is dead, and all of them while the store cannot say who died; the
        next tick tries again."""
        busy: set[str] = set()
        try:
            dead = self.leases.dead_replicas(now, self.ttl)
            if dead:
                undo.recover(self.engine, dead_owners=set(dead), lock=self.leases.exclusive, targets=taken, busy=busy)
            departed = set(self.leases.departed(self.owner, now, self.ttl)) - set(dead)
            busy |= undo.in_flight(self.engine, departed) & taken
        except ReconcilerError as exc:
            log.error("taken targets not settled; they are passed once they are", targets=len(taken), error=str(exc))
            return taken
        return busy

    def housekeeping(self, now: datetime) -> None:
        """Settle the in-flight actions of replicas whose heartbeat stopped, then forget those whose runs are all
        settled. A run whose target's lock is busy (the replica that took the target over is passing it) waits
        for a later tick: forgetting its replica then would leave the run unsettled for good, since no later
        tick would know its owner was dead."""
        try:
            dead = set(self.leases.dead_replicas(now, self.ttl))
            recovered = undo.recover(self.engine, dead_owners=dead, lock=self.leases.exclusive)
            waiting = {owner for _, owner in self.engine.store.unfinished_runs() if owner in dead} if dead else set()
            for owner in dead - waiting:
                self.leases.forget_replica(owner)
        except ReconcilerError as exc:
            log.error("housekeeping failed; trying again at the next tick", error=str(exc))
            return
        if dead - waiting:
            log.warning(
                "replicas gone; their targets are taken over", replicas=sorted(dead - waiting), actions=len(recovered)
            )
        if waiting:
            log.info("runs of gone replicas wait for their targets' locks", replicas=sorted(waiting))

    def leave(self) -> None:
        """At a clean shutdown: give the leases back, so the other replicas take them at their next tick."""
        if self.shared:
            try:
                self.leases.forget_replica(self.owner)
            except ReconcilerError as exc:
                log.warning("leases not given back; they expire by themselves", error=str(exc))
