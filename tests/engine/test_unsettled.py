"""A pass does not write a target while another run's action on it is in flight: the action's settling would
find the pass's fix in live and record it as its own (one fix journaled twice), and a live writer would fight
it. It writes once the action is settled. A run of another host that is no replica holds nothing: nothing here
could ever settle it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.loader import load
from reconciler.domain.clock import SystemClock
from reconciler.domain.manifest import DesiredVersion, DriftOp
from reconciler.domain.plan import IN_FLIGHT, Action, ActionState
from reconciler.domain.run import Mode, RunKind, RunStatus
from reconciler.engine import process, unsettled
from reconciler.engine.assembly import assemble
from reconciler.engine.gate import Hold
from reconciler.engine.guard import Guard
from reconciler.observe.metrics import Metrics
from reconciler.remediate import recovery
from reconciler.runtime import undo
from reconciler.runtime.replicas import Replicas
from reconciler.store.history import SqlHistoryStore
from reconciler.store.leases import SqlLeaseStore
from tests.conftest import HMAC_KEY
from tests.remediate.test_recovery import setup

LIVE = "a: 1\nb: 2\nc: 2\npw: new\n"  # desired says a: 2


def over(tmp_path: Path, store: SqlHistoryStore, accounted: unsettled.Accounted = unsettled.this_host) -> Any:
    _, adapter = setup(tmp_path, LIVE)
    (tmp_path / "desired" / "p.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    state = load(tmp_path / "desired")
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    return assemble(
        lambda: state,
        store,
        lambda name: adapter,
        Metrics(),
        SystemClock(),
        guard=Guard(Mode.APPLY, ["*"]),
        hmac_key=HMAC_KEY,
        accounted=accounted,
    )


def in_flight(store: SqlHistoryStore, owner: str) -> tuple[str, str]:
    """A run of `owner` whose write of /a of t from 1 to 2 is staged: (run, action)."""
    run = store.start_run(RunKind.APPLY, "cli", "v" * 64, owner=owner)
    action = Action(str(uuid.uuid4()), run, "t", ("a",), DriftOp.CHANGE, 1, 2, "v" * 64, "r")
    store.record_actions([action.with_state(ActionState.STAGED)])
    return run, action.id


def live(tmp_path: Path) -> str:
    return (tmp_path / "live" / "c.yaml").read_text()


def test_a_live_writers_action_in_flight_holds_the_target_until_its_run_ends(
    tmp_path: Path, store: SqlHistoryStore
) -> None:
    engine = over(tmp_path, store)
    other, action = in_flight(store, process.identity())  # another run of a live process: a command writing t

    (held,) = engine.reconcile(["t"]).targets
    assert held.decision.held_by is Hold.UNSETTLED
    assert held.decision.why is not None and other in held.decision.why and "still running" in held.decision.why
    assert live(tmp_path) == LIVE  # nothing written

    store.update_actions([action], ActionState.FAILED, "commit: refused")  # that run failed to write; it ends
    store.finish_run(other, RunStatus.FIXED)
    (wrote,) = engine.reconcile(["t"]).targets
    assert wrote.decision.held_by is None and wrote.decision.writes
    assert live(tmp_path).startswith("a: 2")


def test_a_dead_runs_action_is_settled_before_the_target_is_written(tmp_path: Path, store: SqlHistoryStore) -> None:
    """The order that matters: recovery settles the dead run's action against live before any write, so it
    finds live as the dead run left it (1: not written), and the one fix is journaled once."""
    engine = over(tmp_path, store)
    dead, action = in_flight(store, "x")  # "x" is no process of this host: gone

    (held,) = engine.reconcile(["t"]).targets
    assert held.decision.held_by is Hold.UNSETTLED and "whose process is gone" in (held.decision.why or "")
    assert live(tmp_path) == LIVE

    undo.recover(engine)
    fixed = engine.reconcile(["t"])
    assert live(tmp_path).startswith("a: 2")
    assert [(a.id, a.state) for a in store.actions(dead)] == [(action, ActionState.INTERRUPTED)]
    verified = [a for a in store.actions(states=[ActionState.VERIFIED]) if a.target == "t"]
    assert [(a.run_id, a.pointer) for a in verified] == [(fixed.run_id, "/a")]


def test_another_hosts_command_holds_nothing(tmp_path: Path, store: SqlHistoryStore) -> None:
    """Its process cannot be watched from here nor its death known: holding for it would hold for good."""
    engine = over(tmp_path, store)
    in_flight(store, "elsewhere:4242:17")

    (wrote,) = engine.reconcile(["t"]).targets
    assert wrote.decision.held_by is None
    assert live(tmp_path).startswith("a: 2")


def test_a_replica_that_gave_the_target_back_mid_write_holds_it_until_the_housekeeper_settles_it(
    tmp_path: Path, store: SqlHistoryStore
) -> None:
    """A replica gave t back while its write was in flight (a rebalance), then died: the replica now holding
    t took it from a live replica, so it settled nothing. Its passes wait; the housekeeper settles the action
    once the heartbeat stops; then t is written, and the fix is journaled once."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("one daemon on SQLite: no replicas")
    leases = SqlLeaseStore(store.engine)
    engine = over(tmp_path, store, unsettled.accounted_by(leases))
    replica, ttl = "another-host:4242:17", timedelta(seconds=2)
    leases.heartbeat(replica, datetime.now(UTC), ttl)
    run, action = in_flight(store, replica)

    (held,) = engine.reconcile(["t"]).targets  # the replica lives: its write may be under way
    assert held.decision.held_by is Hold.UNSETTLED and "a replica's" in (held.decision.why or "")

    leases.heartbeat(replica, datetime.now(UTC) - timedelta(minutes=5), ttl)  # it died
    (still,) = engine.reconcile(["t"]).targets  # dead but not settled yet: still held
    assert still.decision.held_by is Hold.UNSETTLED and live(tmp_path) == LIVE

    Replicas(leases, engine, Metrics(), ttl_s=2, wake=lambda _: None).housekeeping(datetime.now(UTC))
    assert [(a.id, a.state) for a in store.actions(run)] == [(action, ActionState.INTERRUPTED)]
    assert not leases.replica(replica)  # its runs settled, it is forgotten
    engine.reconcile(["t"])
    assert live(tmp_path).startswith("a: 2")
    assert len([a for a in store.actions(states=[ActionState.VERIFIED]) if a.target == "t"]) == 1


def test_a_rollback_waits_too(tmp_path: Path, store: SqlHistoryStore) -> None:
    engine = over(tmp_path, store)
    fixed = engine.reconcile(["t"])
    assert live(tmp_path).startswith("a: 2")
    in_flight(store, process.identity())  # then a command of this host starts writing t

    (held,) = undo.rollback(engine, fixed.run_id, dry_run=False).targets
    assert held.decision.held_by is Hold.UNSETTLED and "still running" in (held.decision.why or "")
    assert live(tmp_path).startswith("a: 2")  # not rolled back under the other writer


def test_two_recoveries_of_one_run_settle_its_action_once(tmp_path: Path, store: SqlHistoryStore) -> None:
    """A daemon's recovery and a command's can settle the same dead run at once. If one settled the action (not
    written: live held 1) and a pass then fixed the target, the other, from its earlier read, would find the fix
    in live and record the dead write as done: the state recovery found first stands."""
    engine = over(tmp_path, store)
    dead, action = in_flight(store, "x")
    stale = store.actions(dead, IN_FLIGHT)  # the second recovery's read, before the first settled anything

    undo.recover(engine)
    engine.reconcile(["t"])
    assert live(tmp_path).startswith("a: 2")
    state = engine.desired()
    recovery.recover_target(state.targets["t"], stale, engine.adapters("file"), store, HMAC_KEY)

    assert [(a.id, a.state) for a in store.actions(dead)] == [(action, ActionState.INTERRUPTED)]
