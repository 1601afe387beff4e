"""When a replica claims again before its next regular tick (every third of a lease time): just after another
replica's leases would lapse, so that a dead replica's targets are taken within one lease time of its death
(they were taken at the first regular tick after that, up to 46 s after a SIGKILL with a 30 s lease in
bench.replicas_scale), and in a moment when a claim fell short while taking leases."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from reconciler.errors import StoreUnavailable
from reconciler.observe.metrics import Metrics
from reconciler.runtime import replicas as replicas_module
from reconciler.runtime.replicas import Replicas
from reconciler.runtime.scheduler import Scheduler
from reconciler.store.history import SqlHistoryStore
from reconciler.store.leases import SqlLeaseStore
from tests.store.test_leases import held_locks

TARGETS = [f"t{i:02}" for i in range(10)]


class Leases(SqlLeaseStore):
    """The lease store, with the housekeeping (settling dead replicas' runs, tested elsewhere) left out."""

    def housekeeper(self, owner: str, now: datetime, ttl: timedelta) -> bool:
        return False


def replica(store: SqlHistoryStore, owner: str) -> Replicas:
    return Replicas(Leases(store.engine), None, Metrics(), ttl_s=30, wake=lambda _: None, owner=owner)  # type: ignore[arg-type]


def test_a_replica_ticks_again_just_after_another_ones_leases_would_lapse(store: SqlHistoryStore) -> None:
    if store.engine.dialect.name != "postgresql":
        assert replica(store, "a").tick(TARGETS) is None  # one daemon: no other replica, no lease
        return
    a, b = replica(store, "a"), replica(store, "b")
    before = datetime.now(UTC)
    assert a.tick(TARGETS) is None  # alone, holding every target
    soon = b.tick(TARGETS)  # a holds them all until its next tick gives back its surplus: b took none
    assert soon is not None
    assert before + timedelta(seconds=30) < soon <= datetime.now(UTC) + timedelta(seconds=31)  # a's lapse


def test_a_claim_that_falls_short_while_taking_leases_is_made_again_in_a_moment(store: SqlHistoryStore) -> None:
    if store.engine.dialect.name != "postgresql":  # one daemon: every target is its own, no claim to repeat
        one = replica(store, "a")
        assert one.tick(TARGETS) is None and all(one.owns(name) for name in TARGETS)
        return
    a, b, c = replica(store, "a"), replica(store, "b"), replica(store, "c")
    a.tick(TARGETS)  # a holds all ten
    b.tick(TARGETS)  # none free: b waits for a's surplus, and is woken by a's lapse only
    a.tick(TARGETS)  # two replicas: a gives back five
    c.tick(TARGETS)  # three: a share of four; c takes four of the five free
    now = datetime.now(UTC)
    soon = b.tick(TARGETS)  # b takes the one left, short of its four while a still holds five
    assert sum(b.owns(name) for name in TARGETS) == 1
    assert soon is not None and soon <= now + timedelta(seconds=2)
    later = b.tick(TARGETS)  # nothing new to take: it waits for the others' ticks, not a moment
    assert later is not None and later > datetime.now(UTC) + timedelta(seconds=20)


def test_the_daemons_scheduler_runs_a_job_once_at_the_time_given() -> None:
    scheduler = Scheduler(default_interval_s=60, jitter_s=0)
    ran: list[float] = []
    scheduler.start()
    try:
        scheduler.once("soon", lambda: ran.append(time.monotonic()), datetime.now(UTC) + timedelta(seconds=0.3))
        start = time.monotonic()
        deadline = start + 5
        while not ran and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        scheduler.shutdown()
    assert len(ran) == 1 and ran[0] - start >= 0.2


def test_at_the_lapse_plus_the_margin_the_other_replicas_leases_are_free(store: SqlHistoryStore) -> None:
    """The store counts a heartbeat exactly a lease time old alive: the tick comes a margin after that."""
    leases, ttl = SqlLeaseStore(store.engine), timedelta(seconds=30)
    t0 = datetime(2026, 12, 2, 12, tzinfo=UTC)
    leases.heartbeat("a", t0, ttl)
    leases.claim("a", TARGETS, t0, ttl, 1)
    leases.heartbeat("b", t0, ttl)
    lapse = leases.next_lapse("b", t0, ttl)
    assert lapse == t0 + ttl
    leases.heartbeat("b", lapse, ttl)
    assert leases.claim("b", TARGETS, lapse, ttl, 1) == set()  # a still counts as alive
    at = lapse + replicas_module.LAPSE_MARGIN
    leases.heartbeat("b", at, ttl)
    assert leases.claim("b", TARGETS, at, ttl, 1) == set(TARGETS)


def test_a_replica_heartbeats_as_joining_while_it_loads(store: SqlHistoryStore) -> None:
    """Replicas.joining() heartbeats as joining for as long as the load takes (every third of a lease time),
    so that a replica loaded meanwhile takes only its share; the first tick after it makes the replica ready."""
    if store.engine.dialect.name != "postgresql":
        with replica(store, "a").joining():  # one daemon: nothing to tell another
            assert not SqlLeaseStore(store.engine).replica("a")
        return
    a, b = replica(store, "a"), replica(store, "b")
    b.ttl = timedelta(seconds=0.3)  # a heartbeat every 0.1 s
    leases = SqlLeaseStore(store.engine)
    with b.joining():
        time.sleep(0.35)  # beyond b's first heartbeat's lease: only later heartbeats keep it joining
        assert leases.joining("a", datetime.now(UTC), timedelta(seconds=0.3)) == 1
        a.tick(TARGETS)
    assert sum(a.owns(name) for name in TARGETS) == 5  # its share of two
    b.ttl = timedelta(seconds=30)
    b.tick(TARGETS)
    assert sum(b.owns(name) for name in TARGETS) == 5
    assert leases.joining("a", datetime.now(UTC), timedelta(seconds=30)) == 0


class Failing(Leases):
    """The lease store, unreachable once `down` is set."""

    down = False

    def heartbeat(self, owner: str, now: datetime, ttl: timedelta, *, joining: bool = False) -> int:
        if self.down:
            raise StoreUnavailable("the database is gone")
        return super().heartbeat(owner, now, ttl, joining=joining)


def test_each_pass_of_a_batch_asks_again_and_gives_its_lock_back_as_it_ends(store: SqlHistoryStore) -> None:
    """A batch's locks are taken together, but each pass asks as it starts: a tick that failed since the batch
    began (the leases not renewed) makes the rest of the batch look without writing, and a lease lost makes the
    pass not run. Each pass's lock goes back as it ends, not with the batch: a target taken by another replica
    meanwhile waits for one pass at most."""
    leases = Failing(store.engine)
    a = Replicas(leases, None, Metrics(), ttl_s=30, wake=lambda _: None, owner="a")  # type: ignore[arg-type]
    a.tick(TARGETS)
    other = SqlLeaseStore(store.engine)
    with a.exclusive_all(TARGETS) as locks:
        assert locks.start("t00") == replicas_module.RUN
        locks.done("t00")
        if store.engine.dialect.name == "postgresql":
            with other.exclusive("t00") as free, other.exclusive("t01") as busy:
                assert free and not busy  # t00's pass ended, t01's lock is still the batch's
        if store.engine.dialect.name != "postgresql":  # one daemon: no lease to renew or lose
            assert locks.start("t01") == replicas_module.RUN
            return
        leases.down = True
        a.tick(TARGETS)  # the leases cannot be renewed: look, do not write
        access = locks.start("t01")
        assert access.run and access.cut_off is not None and "cannot renew" in access.cut_off
        locks.done("t01")
        a._held.discard("t02")  # as a claim that gave t02 away
        assert not locks.start("t02").run
    assert [held_locks(store, name) for name in TARGETS] == [0] * len(TARGETS)
