"""The housekeeper forgets a dead replica only once its runs are settled: a run whose target is busy (the
replica that took the target over is passing it) waits for a later tick, and that tick must still know the
run's owner is dead. Forgetting the replica at once left such runs unsettled for good (seen in the replicas
e2e test, one SIGKILL in three)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from reconciler.domain.manifest import DesiredVersion, DriftOp
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.errors import StoreUnavailable
from reconciler.observe.metrics import Metrics
from reconciler.runtime.replicas import Replicas
from reconciler.store.history import SqlHistoryStore
from reconciler.store.leases import SqlLeaseStore
from tests.remediate.test_recovery import engine_over, setup
from tests.store.test_lease_sessions import end_session

GONE = "another-host:4242:17"  # a replica on another host: only its heartbeat says whether it lives


class BusyOnce(SqlLeaseStore):
    """The lease store, with `t`'s advisory lock held by someone else the first time it is asked for."""

    asked = 0

    @contextmanager
    def exclusive(self, target: str) -> Iterator[bool]:
        self.asked += 1
        if self.asked == 1:
            yield False
            return
        with super().exclusive(target) as free:
            yield free


def test_a_gone_replica_is_forgotten_only_once_its_runs_are_settled(tmp_path: Path, store: SqlHistoryStore) -> None:
    state, adapter = setup(tmp_path, "a: 2\nb: 1\nc: 2\npw: new\n")
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    leases = BusyOnce(store.engine)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    leases.heartbeat(GONE, long_ago, timedelta(seconds=2))
    run = store.start_run(RunKind.APPLY, "schedule", "v" * 64, owner=GONE)
    store.record_actions(
        [
            Action(str(uuid.uuid4()), run, "t", ("a",), DriftOp.CHANGE, 1, 2, "v" * 64, "r").with_state(
                ActionState.STAGED
            )
        ]
    )
    replicas = Replicas(leases, engine_over(state, store, adapter), Metrics(), ttl_s=2, wake=lambda _: None)
    now = datetime.now(UTC)

    replicas.housekeeping(now)  # t is busy: its run waits
    settled = store.run(run)
    assert settled is not None and settled.status is RunStatus.RUNNING
    assert leases.dead_replicas(now, timedelta(seconds=2)) == [GONE]  # still known to be gone

    replicas.housekeeping(now)  # t is free now
    settled = store.run(run)
    assert settled is not None and settled.status is RunStatus.FAILED
    assert [a.state for a in store.actions(run)] == [ActionState.VERIFIED]  # live holds what it wrote
    assert leases.dead_replicas(now, timedelta(seconds=2)) == []


def dead_run_on_t(store: SqlHistoryStore, leases: SqlLeaseStore) -> tuple[str, str]:
    """A replica of another host that died (its heartbeat and leases five minutes old) while it was writing
    /a of t from 1 to 2: the action is staged. Returns the run and the action."""
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    leases.heartbeat(GONE, long_ago, timedelta(seconds=2))
    leases.claim(GONE, ["t"], long_ago, timedelta(seconds=2), 1)
    run = store.start_run(RunKind.APPLY, "schedule", "v" * 64, owner=GONE)
    action = Action(str(uuid.uuid4()), run, "t", ("a",), DriftOp.CHANGE, 1, 2, "v" * 64, "r")
    store.record_actions([action.with_state(ActionState.STAGED)])
    return run, action.id


class FixedMeanwhile(SqlLeaseStore):
    """The lease store, where between reading a run's in-flight actions and taking t's lock, the replica that
    took t over settled the dead run's action (not written: live held 1) and then fixed t itself."""

    def __init__(self, engine: Engine, fix: Callable[[], None]) -> None:
        super().__init__(engine)
        self.fix = fix

    @contextmanager
    def exclusive(self, target: str) -> Iterator[bool]:
        self.fix()
        with super().exclusive(target) as free:
            yield free


def test_an_action_settled_by_another_replica_meanwhile_is_not_settled_again(
    tmp_path: Path, store: SqlHistoryStore
) -> None:
    """The housekeeper reads a dead run's in-flight actions, then takes each target's lock. If the replica
    that took the target over settled the action and fixed the target in between, live now holds the
    action's new value: settling it again from the first read recorded the dead replica's write as done, so
    the one fix was journaled twice (seen in the replicas e2e test: three verified actions for two fixes)."""
    state, adapter = setup(tmp_path, "a: 1\nb: 2\nc: 2\npw: new\n")
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    live = tmp_path / "live" / "c.yaml"

    def taken_over_and_fixed() -> None:
        if live.read_text().startswith("a: 1"):
            (interrupted,) = store.actions(run, [ActionState.STAGED])
            store.update_actions([interrupted.id], ActionState.INTERRUPTED, "settled by the new holder")
            live.write_text("a: 2\nb: 2\nc: 2\npw: new\n")

    leases = FixedMeanwhile(store.engine, taken_over_and_fixed)
    run, action = dead_run_on_t(store, leases)
    replicas = Replicas(leases, engine_over(state, store, adapter), Metrics(), ttl_s=2, wake=lambda _: None)

    replicas.housekeeping(datetime.now(UTC))

    assert [(a.id, a.state) for a in store.actions(run)] == [(action, ActionState.INTERRUPTED)]
    settled = store.run(run)
    assert settled is not None and settled.status is RunStatus.FAILED


def test_a_replica_settles_a_dead_replicas_action_before_it_passes_the_target(
    tmp_path: Path, store: SqlHistoryStore
) -> None:
    """The replica that takes t over settles the dead replica's in-flight action on t in the tick that takes
    it, before t is held (and so before any pass of t): live still holds 1, so the action was not written."""
    _, replicas, woken, run, action = taking_over(tmp_path, store, NoHousekeeping)

    replicas.tick(["t"])

    assert replicas.owns("t") and woken == ["t"]
    assert [(a.id, a.state) for a in store.actions(run)] == [(action, ActionState.INTERRUPTED)]
    settled = store.run(run)
    assert settled is not None and settled.status is RunStatus.FAILED


def test_a_taken_target_is_not_held_while_the_store_cannot_say_who_died(tmp_path: Path, store: SqlHistoryStore) -> None:
    leases, replicas, woken, run, _ = taking_over(tmp_path, store, NoHousekeeping, unreadable=True)

    replicas.tick(["t"])  # t is leased, but the dead replica's action on it cannot be settled yet
    assert not replicas.owns("t") and woken == []
    assert [a.state for a in store.actions(run)] == [ActionState.STAGED]

    leases.unreadable = False
    replicas.tick(["t"])
    assert replicas.owns("t") and woken == ["t"]
    assert [a.state for a in store.actions(run)] == [ActionState.INTERRUPTED]


class NoHousekeeping(SqlLeaseStore):
    """The lease store, where this replica never holds the housekeeping lease (the settling in the tests
    above is the taking replica's own), and `dead_replicas` fails while `unreadable`."""

    unreadable = False

    def housekeeper(self, owner: str, now: datetime, ttl: timedelta) -> bool:
        return False

    def dead_replicas(self, now: datetime, ttl: timedelta) -> list[str]:
        if self.unreadable:
            raise StoreUnavailable("the database is gone")
        return super().dead_replicas(now, ttl)


class BusyTakenLock(NoHousekeeping):
    """t's advisory lock held elsewhere (another replica settling it, or a name whose lock key is the same)."""

    @contextmanager
    def exclusive(self, target: str) -> Iterator[bool]:
        yield False


def test_a_taken_target_whose_lock_is_busy_is_not_held_until_it_is_settled(
    tmp_path: Path, store: SqlHistoryStore
) -> None:
    _, replicas, woken, run, _ = taking_over(tmp_path, store, BusyTakenLock)

    replicas.tick(["t"])
    assert not replicas.owns("t") and woken == []
    assert [a.state for a in store.actions(run)] == [ActionState.STAGED]


def taking_over(
    tmp_path: Path, store: SqlHistoryStore, kind: type[NoHousekeeping], *, unreadable: bool = False
) -> tuple[NoHousekeeping, Replicas, list[str], str, str]:
    """A replica about to take t, whose dead holder left its write of /a staged (live still holds 1): its lease
    store, the replica, the targets it wakes, the dead run and its action. PostgreSQL only."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("one daemon on SQLite: no lease to take over")
    state, adapter = setup(tmp_path, "a: 1\nb: 2\nc: 2\npw: new\n")
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    leases = kind(store.engine)
    run, action = dead_run_on_t(store, leases)
    leases.unreadable = unreadable
    woken: list[str] = []
    replicas = Replicas(leases, engine_over(state, store, adapter), Metrics(), ttl_s=2, wake=woken.append)
    return leases, replicas, woken, run, action


def test_a_departed_replicas_write_in_flight_waits_for_its_heartbeat_to_lapse(
    tmp_path: Path, store: SqlHistoryStore
) -> None:
    """A replica is killed while it writes t: its session ends at once, and the others take its leases at once.
    Its other target, u, is passed at once; t, whose write it left staged, is held (and settled) only once its
    heartbeat lapses, since a session can also end under a live process that is still writing."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("one daemon on SQLite: no lease to take over")
    state, adapter = setup(tmp_path, "a: 1\nb: 2\nc: 2\npw: new\n")
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    ttl = timedelta(seconds=30)
    now = datetime.now(UTC)
    leases = NoHousekeeping(store.engine)
    leases.heartbeat("taker", now, ttl)  # the replica below, whose session begins before the other's heartbeat
    killed = SqlLeaseStore(store.engine)
    killed.heartbeat(GONE, now, ttl)
    assert killed.claim(GONE, ["t", "u"], now, ttl, 1) == {"t", "u"}
    run = store.start_run(RunKind.APPLY, "schedule", "v" * 64, owner=GONE)
    action = Action(str(uuid.uuid4()), run, "t", ("a",), DriftOp.CHANGE, 1, 2, "v" * 64, "r")
    store.record_actions([action.with_state(ActionState.STAGED)])
    end_session(store.engine, GONE)
    woken: list[str] = []
    replicas = Replicas(
        leases, engine_over(state, store, adapter), Metrics(), ttl_s=30, wake=woken.append, owner="taker"
    )

    assert replicas.departures() and not replicas.departures()  # news once
    replicas.tick(["t", "u"])
    assert replicas.owns("u") and not replicas.owns("t") and woken == ["u"]
    assert [a.state for a in store.actions(run)] == [ActionState.STAGED]

    with store.engine.begin() as conn:  # its heartbeat lapses: it is dead, and what it left is settled
        conn.execute(
            sa.text("UPDATE replicas SET heartbeat_at = heartbeat_at - interval '5 minutes' WHERE id = :id"),
            {"id": GONE},
        )
    replicas.tick(["t", "u"])
    assert replicas.owns("t") and woken == ["u", "t"]
    assert [a.state for a in store.actions(run)] == [ActionState.INTERRUPTED]
