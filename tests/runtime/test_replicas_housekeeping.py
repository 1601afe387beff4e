"""The housekeeper forgets a dead replica only once its runs are settled: a run whose target is busy (the
replica that took the target over is passing it) waits for a later tick, and that tick must still know the
run's owner is dead. Forgetting the replica at once left such runs unsettled for good (seen in the replicas
e2e test, one SIGKILL in three)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.domain.manifest import DesiredVersion, DriftOp
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.observe.metrics import Metrics
from reconciler.runtime.replicas import Replicas
from reconciler.store.history import SqlHistoryStore
from reconciler.store.leases import SqlLeaseStore
from tests.remediate.test_recovery import engine_over, setup

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
