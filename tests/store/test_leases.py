"""Leases on the real databases: fair shares, take-over of a dead replica's targets, one housekeeper, and
PostgreSQL advisory locks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from reconciler.store import leases as leases_module
from reconciler.store.history import SqlHistoryStore
from reconciler.store.leases import SqlLeaseStore

TTL = timedelta(seconds=30)
T0 = datetime(2026, 11, 22, 12, tzinfo=UTC)
TARGETS = [f"t{i:02}" for i in range(10)]


def test_replicas_share_the_targets_and_take_over_a_dead_ones(store: SqlHistoryStore) -> None:
    leases = SqlLeaseStore(store.engine)
    assert leases.heartbeat("a", T0, TTL) == 1
    a = leases.claim("a", TARGETS, T0, TTL, 1)
    assert a == set(TARGETS)
    assert leases.heartbeat("b", T0, TTL) == 2
    assert leases.claim("b", TARGETS, T0, TTL, 2) == set()  # all held, none expired
    later = T0 + timedelta(seconds=10)
    leases.heartbeat("a", later, TTL)
    a = leases.claim("a", TARGETS, later, TTL, 2)  # gives back its surplus
    assert len(a) == 5
    b = leases.claim("b", TARGETS, later, TTL, 2)
    assert len(b) == 5 and a.isdisjoint(b) and a | b == set(TARGETS)

    # a stops heartbeating; once its leases expire, b takes everything.
    much_later = later + TTL + timedelta(seconds=1)
    assert leases.heartbeat("b", much_later, TTL) == 1
    assert leases.dead_replicas(much_later, TTL) == ["a"]
    assert leases.claim("b", TARGETS, much_later, TTL, 1) == set(TARGETS)
    leases.forget_replica("a")
    assert leases.dead_replicas(much_later, TTL) == []


def test_targets_leave_with_the_desired_state(store: SqlHistoryStore) -> None:
    leases = SqlLeaseStore(store.engine)
    leases.heartbeat("a", T0, TTL)
    assert leases.claim("a", TARGETS, T0, TTL, 1) == set(TARGETS)
    assert leases.claim("a", TARGETS[:3], T0, TTL, 1) == set(TARGETS[:3])


def test_one_housekeeper(store: SqlHistoryStore) -> None:
    leases = SqlLeaseStore(store.engine)
    assert leases.housekeeper("a", T0, TTL)
    assert not leases.housekeeper("b", T0, TTL)
    assert leases.housekeeper("a", T0 + timedelta(seconds=20), TTL)  # renewed
    assert not leases.housekeeper("b", T0 + timedelta(seconds=40), TTL)  # still a's: renewed at +20
    assert leases.housekeeper("b", T0 + timedelta(seconds=51), TTL)  # a stopped renewing


def test_advisory_locks_keep_a_target_to_one_pass_at_a_time(store: SqlHistoryStore) -> None:
    leases = SqlLeaseStore(store.engine)
    if not leases.shared:
        with leases.exclusive("t") as got:
            assert got  # SQLite serves one daemon: nothing to exclude
        return
    other = SqlLeaseStore(store.engine)
    with leases.exclusive("t") as got:
        assert got
        with other.exclusive("t") as second:
            assert not second
        with other.exclusive("u") as different:
            assert different
    with other.exclusive("t") as after:
        assert after


def test_a_batch_takes_its_passes_locks_together_and_gives_them_back(store: SqlHistoryStore) -> None:
    """exclusive_all(): one statement takes a batch's locks (those held elsewhere are left out), one gives them
    back. Two names whose keys are alike (t928096, t11200040) are both taken and both released: a lock left
    behind would stay with the pooled connection, and the target would be busy for every replica."""
    leases = SqlLeaseStore(store.engine)
    if not leases.shared:
        with leases.exclusive_all(["t", "u"]) as (free, release):
            assert free == {"t", "u"}  # SQLite serves one daemon: nothing to exclude
        return
    other = SqlLeaseStore(store.engine)
    with other.exclusive("t") as held:
        assert held
        with leases.exclusive_all(["t", "u", "v"]) as (free, release):
            assert free == {"u", "v"}
            with other.exclusive("u") as second:
                assert not second
        with other.exclusive("u") as after, other.exclusive("v") as too:
            assert after and too
    alike = ["t928096", "t11200040"]
    assert leases_module._key(alike[0]) == leases_module._key(alike[1])
    with leases.exclusive_all(alike) as (free, release):
        assert free == set(alike)
        release(alike[0])  # its pass ended: the key is still held once, for the other's
        release(alike[0])  # given back already: nothing more
        assert held_locks(store, alike[0]) == 1
        with other.exclusive(alike[1]) as second:
            assert not second
    assert held_locks(store, alike[0]) == 0  # the pooled connection the batch had holds it no more


def held_locks(store: SqlHistoryStore, target: str) -> int:
    """How many times any session holds `target`'s advisory lock (a session counts each time it took it)."""
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :c"
                    " AND objid = :k AND objsubid = 2"
                ),
                {"c": leases_module.ADVISORY_CLASS, "k": leases_module._key(target) & 0xFFFFFFFF},
            ).scalar_one()
        )


@pytest.mark.parametrize("replicas", [2, 3])
def test_shares_cover_every_target_exactly_once(store: SqlHistoryStore, replicas: int) -> None:
    leases = SqlLeaseStore(store.engine)
    owners = [f"r{i}" for i in range(replicas)]
    for owner in owners:
        leases.heartbeat(owner, T0, TTL)
    held: dict[str, set[str]] = {o: set() for o in owners}
    for _ in range(3):  # a few rounds, as the ticks come
        for owner in owners:
            held[owner] = leases.claim(owner, TARGETS, T0, TTL, replicas)
    assert sum(len(h) for h in held.values()) == len(TARGETS)
    assert set().union(*held.values()) == set(TARGETS)
    assert max(len(h) for h in held.values()) <= -(-len(TARGETS) // replicas)


def test_a_fleet_beyond_a_statements_parameters_is_shared_by_replicas_claiming_at_once(store: SqlHistoryStore) -> None:
    """70,000 targets: more names than PostgreSQL takes parameters in one statement (65,535). Three replicas claim
    at the same moment, from threads; each ends with its share, no target twice, none left; the survivors of a
    dead one take its share."""
    leases = SqlLeaseStore(store.engine)
    fleet = [f"app{i // 200:03}/target-{i:05}" for i in range(70_000)]
    owners = ["r0", "r1", "r2"]
    for owner in owners:
        leases.heartbeat(owner, T0, TTL)
    held: dict[str, set[str]] = {}
    for _ in range(2):
        with ThreadPoolExecutor(len(owners)) as pool:
            held = dict(zip(owners, pool.map(lambda o: leases.claim(o, fleet, T0, TTL, 3), owners), strict=True))
    assert sorted(len(h) for h in held.values()) == [23_332, 23_334, 23_334]  # shares are rounded up
    assert set().union(*held.values()) == set(fleet) and sum(map(len, held.values())) == len(fleet)

    later = T0 + TTL + timedelta(seconds=1)  # r2 stopped; its leases expired
    for owner in owners[:2]:
        leases.heartbeat(owner, later, TTL)
    survivors = {owner: leases.claim(owner, fleet, later, TTL, 2) for owner in owners[:2]}
    assert [len(h) for h in survivors.values()] == [35_000, 35_000]
    assert survivors["r0"] | survivors["r1"] == set(fleet)
    shrunk = leases.claim("r0", fleet[:10], later, TTL, 2)  # the desired state shrank to 10 targets
    assert shrunk <= survivors["r0"] & set(fleet[:10]) and len(shrunk) <= 5  # the rest, and its surplus, given back


def test_a_replicas_heartbeat_keeps_its_leases(store: SqlHistoryStore) -> None:
    """Leases live with their holder's heartbeat (one row a tick, however many targets it holds): past their
    first expiry they stay a's while a heartbeats, and lapse when it stops."""
    leases = SqlLeaseStore(store.engine)
    leases.heartbeat("a", T0, TTL)
    assert leases.claim("a", TARGETS, T0, TTL, 1) == set(TARGETS)
    for step in range(1, 4):  # a heartbeats, and claims nothing, for three lease times
        leases.heartbeat("a", T0 + step * TTL, TTL)
    later = T0 + 3 * TTL + timedelta(seconds=1)
    assert leases.heartbeat("b", later, TTL) == 2
    assert leases.claim("b", TARGETS, later, TTL, 2) == set()  # a's, all of them
    gone = later + TTL  # a stopped at T0 + 3 TTL
    leases.heartbeat("b", gone, TTL)
    assert leases.claim("b", TARGETS, gone, TTL, 1) == set(TARGETS)


def test_a_replica_whose_leases_were_taken_while_it_stalled_sees_it_at_its_next_claim(store: SqlHistoryStore) -> None:
    """A claim trusts the names its last one left when their count stands (their only other changes remove
    some); leases taken while the replica's heartbeat lapsed change the count, and are read again."""
    fleet = {name: None for name in TARGETS}  # the daemon passes its desired state's mapping, the same each tick
    a, b = SqlLeaseStore(store.engine), SqlLeaseStore(store.engine)
    a.heartbeat("a", T0, TTL)
    assert a.claim("a", fleet, T0, TTL, 1) == set(TARGETS)
    assert a.claim("a", fleet, T0 + timedelta(seconds=10), TTL, 1) == set(TARGETS)  # the names, not read again
    stalled = T0 + TTL + timedelta(seconds=11)  # a's heartbeat lapsed: b takes everything
    b.heartbeat("b", stalled, TTL)
    assert b.claim("b", fleet, stalled, TTL, 1) == set(TARGETS)
    assert a.heartbeat("a", stalled, TTL) == 2
    assert a.claim("a", fleet, stalled, TTL, 2) == set()  # b's now; b gives half back at its next claim
    assert len(b.claim("b", fleet, stalled, TTL, 2)) == 5
    assert a.claim("a", fleet, stalled, TTL, 2) == set(TARGETS) - b.claim("b", fleet, stalled, TTL, 2)


def test_next_lapse_is_when_the_first_other_live_replica_would_lose_its_leases(store: SqlHistoryStore) -> None:
    leases = SqlLeaseStore(store.engine)
    leases.heartbeat("a", T0, TTL)
    assert leases.next_lapse("a", T0, TTL) is None  # alone
    leases.heartbeat("b", T0 + timedelta(seconds=5), TTL)
    leases.heartbeat("c", T0 + timedelta(seconds=8), TTL)
    now = T0 + timedelta(seconds=10)
    assert leases.next_lapse("a", now, TTL) == T0 + timedelta(seconds=5) + TTL  # b's, before c's
    assert leases.next_lapse("b", now, TTL) == T0 + TTL  # a's: its own heartbeat does not count
    gone = T0 + TTL + timedelta(seconds=2)  # b and c live, a lapsed: a dead replica is not waited for
    assert leases.next_lapse("c", gone, TTL) == T0 + timedelta(seconds=5) + TTL


def test_a_joining_replica_is_left_its_share_of_the_free_targets(store: SqlHistoryStore) -> None:
    """A replica loading its desired state heartbeats as joining: a replica loaded meanwhile takes only its share
    among them all, rather than every target to hand most over later; what a ready replica holds it keeps until
    the joining one is ready, and then gives back its surplus as to any replica."""
    leases = SqlLeaseStore(store.engine)
    leases.heartbeat("b", T0, TTL, joining=True)
    leases.heartbeat("c", T0, TTL, joining=True)
    assert leases.heartbeat("a", T0, TTL) == 1  # b and c are alive, and not counted as ready
    assert leases.joining("a", T0, TTL) == 2
    a = leases.claim("a", TARGETS, T0, TTL, 1, leases.joining("a", T0, TTL))
    assert len(a) == 4  # ceil(10 / 3), not all ten
    later = T0 + timedelta(seconds=10)
    assert leases.heartbeat("b", later, TTL) == 2  # b is ready; c still joining
    b = leases.claim("b", TARGETS, later, TTL, 2, leases.joining("b", later, TTL))
    assert len(b) == 4 and a.isdisjoint(b)
    leases.heartbeat("a", later, TTL)
    assert leases.claim("a", TARGETS, later, TTL, 2, leases.joining("a", later, TTL)) == a  # 4 <= its 5 as ready
    # c's load fails: it stops heartbeating, and once its heartbeat lapses the others share its part too.
    lapsed = later + TTL + timedelta(seconds=1)
    for owner in ("a", "b"):
        leases.heartbeat(owner, lapsed, TTL)
    assert leases.joining("a", lapsed, TTL) == 0
    held = [leases.claim(owner, TARGETS, lapsed, TTL, 2, leases.joining("a", lapsed, TTL)) for owner in ("a", "b")]
    assert held[0] | held[1] == set(TARGETS) and held[0].isdisjoint(held[1])


def test_a_replica_joining_for_longer_than_the_limit_is_not_waited_for(store: SqlHistoryStore) -> None:
    """A replica stuck in its load (a hung read of a desired file) but still heartbeating would keep its share
    of the targets unpassed: after JOINING_AT_MOST it no longer counts."""
    leases = SqlLeaseStore(store.engine)
    leases.heartbeat("stuck", T0, TTL, joining=True)
    late = T0 + leases_module.JOINING_AT_MOST + timedelta(seconds=1)
    leases.heartbeat("stuck", late, TTL, joining=True)
    assert leases.joining("a", T0 + timedelta(minutes=9), TTL) == 1
    assert leases.joining("a", late, TTL) == 0
    assert leases.heartbeat("a", late, TTL) == 1
    assert leases.claim("a", TARGETS, late, TTL, 1, leases.joining("a", late, TTL)) == set(TARGETS)
