"""The daemon's workers take the passes that fell due together as one batch, read in bulk."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import registry
from reconciler.adapters.file import FileAdapter
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.observe.targets import NO_DRIFT, render_families
from reconciler.runtime import daemon as daemon_module
from reconciler.runtime.compose import Components, build
from reconciler.runtime.daemon import Daemon
from reconciler.runtime.deadline import Deadline
from reconciler.runtime.queue import WorkQueue
from reconciler.runtime.retry import RetryingAdapter
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.leases import SqlLeaseStore
from tests.store.test_leases import held_locks


class Counting(FileAdapter):
    """The file adapter, counting its reads: every instance shares the log."""

    discovered: list[str] = []
    bulk: list[int] = []

    def discover(self, target: Target) -> Observed:
        Counting.discovered.append(target.name)
        return super().discover(target)

    def fingerprints(self, targets: Any) -> dict[str, str]:
        Counting.bulk.append(len(targets))
        return super().fingerprints(targets)


def batch(daemon: Daemon, names: list[str]) -> None:
    """Queue `names` at once, then let one worker take them as one batch and finish it."""
    for name in names:
        daemon.queue.add(name)
    worker = threading.Thread(target=daemon.workers.work)
    worker.start()
    deadline = time.monotonic() + 20
    # Done when every pass has ended and none is due: the next passes, at their interval, are not waited for
    # (waiting until the queue was empty took the whole 20 s once the desired state scheduled them).
    while (daemon.queue.due() or daemon.queue.working) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time.monotonic() < deadline, "the batch did not end"
    daemon.queue.close()
    worker.join(10)
    assert not worker.is_alive()


def counted(settings: Settings, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Components:
    """The daemon's parts over a migrated SQLite file, its file adapter counting reads."""
    real = registry.adapter_class
    monkeypatch.setattr(registry, "adapter_class", lambda name: Counting if name == "file" else real(name))
    monkeypatch.setattr(Counting, "discovered", [])
    monkeypatch.setattr(Counting, "bulk", [])
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    return build(settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})}))


def test_a_batch_reads_in_full_only_the_targets_that_changed(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    components = counted(settings, sqlite_url, monkeypatch)  # one engine, and so one memo, for every daemon below
    state = components.desired.current()
    names = sorted(state.targets)
    assert len(names) == 3
    components.metrics.init_targets((t.name, t.environment, t.metadata.app or "") for t in state.targets.values())

    hand_offs: list[str] = []
    real_run = Deadline.run
    monkeypatch.setattr(Deadline, "run", lambda self, what, fn: hand_offs.append(what) or real_run(self, what, fn))
    batch(Daemon(components), names)  # the first passes read everything
    # ... each once: with no memo yet, a bulk read would only read them twice
    assert sorted(Counting.discovered) == names and Counting.bulk == []
    # ... ahead of their passes, in one hand-off to the read thread, not one each
    assert hand_offs == ["the read ahead of 3 targets"]

    Counting.discovered.clear()
    runs: list[list[str]] = []
    real_reconcile = components.reconciler.reconcile
    monkeypatch.setattr(
        components.reconciler, "reconcile", lambda names, **kw: runs.append(list(names)) or real_reconcile(names, **kw)
    )
    daemon = Daemon(components)
    first_successes = oldest_successful_passes(components)
    batch(daemon, names)
    assert Counting.discovered == [] and Counting.bulk == [3]  # one bulk read, no read of its own
    assert runs == []  # the unchanged passes ended together, without a run each
    assert sorted(daemon.api.latest()) == names  # ... and each is shown as passed
    # ... counted, and its success time moved on, in every group's oldest
    assert sum(unchanged_passes(components).values()) == 3
    again = oldest_successful_passes(components)
    assert again.keys() == first_successes.keys() and again and all(again[k] > first_successes[k] > 0 for k in again)

    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("log_level: DEBUG", "log_level: WARN"))
    batch(Daemon(components), names)
    assert Counting.discovered == ["payments-api-prod"] and runs == [["payments-api-prod"]]
    runs = components.store.runs()
    assert len(runs) == 4  # three first passes with drift, one for the change; none for unchanged passes

    # An unchanged pass shows its target's last one again while the memo, mode and status it showed stand.
    reconciler = components.reconciler
    first, _ = reconciler.unchanged_passes(names, reconciler.unchanged(names))
    again, _ = reconciler.unchanged_passes(names, reconciler.unchanged(names))
    assert len(first.targets) == 3 and all(a is b for a, b in zip(first.targets, again.targets, strict=True))
    live.write_text(live.read_text() + "# touched\n")
    batch(Daemon(components), names)  # the changed target's full pass
    after, _ = reconciler.unchanged_passes(names, reconciler.unchanged(names))
    shown = {o.target.name: o for o in after.targets}
    before = {o.target.name: o for o in first.targets}
    assert shown["payments-api-prod"].fingerprint != before["payments-api-prod"].fingerprint
    assert all(shown[n] is before[n] for n in names if n != "payments-api-prod")
    components.store.engine.dispose()


def test_a_worker_outlives_a_crash_and_a_target_whose_interval_cannot_be_scheduled(
    settings: Settings, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that escapes a pass is logged and counted, and the worker starts again; a target whose next pass
    cannot be computed is scheduled at the default interval; the other targets keep their passes, and /readyz
    counts the live workers."""
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})})
    components = build(settings)
    daemon = Daemon(components)
    names = sorted(components.desired.current().targets)
    real_next = daemon.scheduler.next_delay

    def next_delay(name: str) -> float | None:
        if name == names[0]:
            raise OverflowError("cannot convert float infinity to integer")
        return real_next(name)

    monkeypatch.setattr(daemon.scheduler, "next_delay", next_delay)

    def next_delays(batch: list[str]) -> dict[str, float | None]:
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(daemon.scheduler, "next_delays", next_delays)
    # A batch of unchanged passes whose next passes cannot all be computed: each is then taken on its own.
    daemon.scheduler.sync(components.desired.current())
    delays = daemon.workers.next_delays(names)
    assert delays[names[0]] == settings.scheduler.default_interval_s
    assert all(delays[n] is not None and delays[n] != settings.scheduler.default_interval_s for n in names[1:])
    passed: list[str] = []
    real_pass = daemon.workers.pass_
    crashed: list[str] = []

    def flaky(name: str, unchanged: Any, *rest: Any) -> None:
        if not crashed:
            crashed.append(name)
            raise RuntimeError("a bug")
        passed.append(name)
        real_pass(name, unchanged, *rest)

    monkeypatch.setattr(daemon.workers, "pass_", flaky)
    for name in names:
        daemon.queue.add(name)
    worker = threading.Thread(target=daemon.workers.supervised, name="worker-0")
    daemon.workers.threads.append(worker)
    worker.start()
    deadline = time.monotonic() + 20
    while len(passed) < len(names) - 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.is_alive() and set(passed) == set(names) - set(crashed)
    assert "reconciler_worker_crashes_total 1.0" in components.metrics.render()[0].decode()
    assert daemon.readiness()["workers"] == f"1/{settings.scheduler.workers}"
    assert daemon.readiness()["ready"] is (settings.scheduler.workers == 1)
    if names[0] in passed:  # its pass ended: the next one is queued at the default interval, not lost
        assert names[0] in daemon.queue
    daemon.queue.close()
    worker.join(10)
    components.store.engine.dispose()


def test_readyz_answers_at_once_while_the_store_hangs(
    settings: Settings, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz answers from the background probe's last look: a store that hangs never holds it up, and once
    the probe has had no answer for a while it says so and is not ready."""
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    components = build(settings)
    daemon = Daemon(components)
    assert daemon.readiness()["store"] == "ok"
    release = threading.Event()
    monkeypatch.setattr(components.store, "ping", lambda: release.wait(30))
    monkeypatch.setattr("reconciler.runtime.daemon.STALE_PROBE_S", 0.3)
    monkeypatch.setattr("reconciler.runtime.daemon.PROBE_S", 0.05)
    daemon._prober = threading.Thread(target=daemon._probe_forever, daemon=True)
    daemon._prober.start()
    time.sleep(0.5)
    started = time.monotonic()
    detail = daemon.readiness()
    assert time.monotonic() - started < 0.5
    assert detail["ready"] is False and detail["store"].startswith("no answer from the history store for")
    release.set()
    daemon.stopping.set()
    daemon._prober.join(5)
    components.store.engine.dispose()


def test_a_desired_edit_passes_again_only_the_targets_it_changed(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit of one target's manifest queues that target at once and reads it in full; the others keep their
    memo (no read of their own at their next pass), and a policy edit passes every target again."""
    components = counted(settings, sqlite_url, monkeypatch)
    daemon = Daemon(components)
    daemon._refresh_desired()  # the first version: every target queued
    names = sorted(components.desired.current().targets)
    batch(daemon, [])
    assert sorted(Counting.discovered) == names

    manifest = settings.desired_dir / "checkout.yaml"
    manifest.write_text(manifest.read_text().replace("LOG_LEVEL: INFO", "LOG_LEVEL: WARNING"))
    daemon.queue = daemon.workers.queue = WorkQueue()
    daemon._refresh_desired()
    assert len(daemon.queue) == 1 and "checkout-staging" in daemon.queue
    Counting.discovered.clear()
    batch(daemon, [])
    assert Counting.discovered == ["checkout-staging"]
    daemon.queue = daemon.workers.queue = WorkQueue()
    batch(daemon, names)
    assert Counting.discovered == ["checkout-staging"]  # the other two took their memo under the new version

    policy = settings.desired_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace("default: reversible", "default: escalate"))
    daemon.queue = daemon.workers.queue = WorkQueue()
    daemon._refresh_desired()
    assert len(daemon.queue) == len(names)
    components.store.engine.dispose()


def test_a_replica_reads_and_passes_only_the_targets_it_holds(
    settings: Settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas on PostgreSQL: the targets another replica holds leave this one's queue unread (each replica
    read every target's live state each interval before, to drop the passes it did not hold)."""
    components = counted(settings.model_copy(update={"database_url": postgres_url}), postgres_url, monkeypatch)
    names = sorted(components.desired.current().targets)
    other = SqlLeaseStore(components.store.engine)
    now = datetime.now(UTC)
    other.heartbeat("other-replica", now, timedelta(minutes=5))
    theirs = other.claim("other-replica", names, now, timedelta(minutes=5), 2)
    daemon = Daemon(components)
    daemon._refresh_desired()  # as the daemon starts: the desired state loaded, its targets queued, leases claimed
    watched = {name for running in daemon.watches._running.values() for name in running.covered}
    daemon.watches.stop()  # its watches would queue passes of their own, at their own time
    ours = [name for name in names if daemon.replicas.owns(name)]
    assert len(theirs) == 2 and ours == sorted(set(names) - theirs)
    assert watched == set(ours)  # it watches the targets it holds, not the others'

    daemon.watches._changed_at.update(dict.fromkeys(names, time.monotonic()))  # as if a watch saw each change
    batch(daemon, names)
    assert Counting.discovered == ours and Counting.bulk == []  # one target left: no bulk read for it
    assert not any(name in daemon.queue for name in theirs)  # nor are they scheduled here
    assert not daemon.watches._changed_at  # their changes are not kept waiting for a pass this replica never runs
    # Its metrics show its own target alone: another replica's would show as never passed, and page.
    assert oldest_successful_passes(components) == {
        'app="payments-api",environment="prod"': pytest.approx(time.time(), abs=60)
    }
    assert sorted(daemon.api.latest()) == ours

    daemon.replicas.tick(sorted(theirs))  # the desired state lost this replica's target: its lease goes
    assert oldest_successful_passes(components) == {} and daemon.api.latest() == {}
    components.store.engine.dispose()


def test_a_batch_passes_only_the_targets_whose_lock_it_got_and_gives_every_lock_back(
    settings: Settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas on PostgreSQL: a batch's passes take their advisory locks together. A target whose lock another
    session holds (a replica that held it a moment ago, still passing it) is not passed here; the others are,
    and no lock of theirs is left with the pooled connection once the batch ends."""
    components = counted(settings.model_copy(update={"database_url": postgres_url}), postgres_url, monkeypatch)
    daemon = Daemon(components)
    daemon._refresh_desired()
    daemon.watches.stop()
    names = sorted(components.desired.current().targets)
    assert all(daemon.replicas.owns(name) for name in names) and len(names) > 2
    busy = names[1]
    with SqlLeaseStore(components.store.engine).exclusive(busy) as held:
        assert held
        batch(daemon, names)
        assert sorted(daemon.api.latest()) == [name for name in names if name != busy]
        assert held_locks(components.store, busy) == 1  # the other session's, still
    assert [held_locks(components.store, name) for name in names] == [0] * len(names)
    components.store.engine.dispose()


def oldest_successful_passes(components: Components) -> dict[str, float]:
    """reconciler_oldest_successful_pass_timestamp_seconds of /metrics, by labels."""
    name = "reconciler_oldest_successful_pass_timestamp_seconds{"
    lines = components.metrics.target_states.render().decode().splitlines()
    return {line[len(name) : line.index("}")]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name)}


def unchanged_passes(components: Components) -> dict[str, float]:
    """reconciler_passes_total{result="unchanged"} by environment."""
    counted: dict[str, float] = {}
    for family in components.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "reconciler_passes_total" and sample.labels.get("result") == "unchanged":
                counted[sample.labels["environment"]] = sample.value
    return counted


def test_a_target_removed_from_the_desired_state_leaves_nothing_behind(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of each target it passes, the daemon keeps its memo (the live document and its comparison), its last
    outcome, and what its adapter and observers keep of it. Kept after the target left the desired state, they
    grew a long-running daemon with every target that came and went: now nothing keeps a removed target."""
    components = counted(settings, sqlite_url, monkeypatch)
    daemon = Daemon(components)
    daemon._refresh_desired()
    assert daemon._state is not None
    names = sorted(daemon._state.targets)
    removed = weakref.ref(daemon._state.targets["checkout-staging"])
    batch(daemon, names)  # the first passes, in full
    batch(Daemon(components), names)  # unchanged passes: each target's last outcome is kept
    batch(Daemon(components), names)
    file_adapter = components.adapters("file").inner  # type: ignore[attr-defined]
    assert isinstance(file_adapter, FileAdapter) and file_adapter._located.keys() == set(names)

    (example / "desired" / "checkout.yaml").unlink()
    daemon._refresh_desired()
    assert "checkout-staging" not in daemon._state.targets
    batch(Daemon(components), sorted(daemon._state.targets))
    # Whether anything refers to it, frozen or not: the collector's policy (runtime/heap.py), which tests of the
    # CLI install in this process, may have frozen it while it lived, and a frozen cycle is not collected.
    gc.unfreeze()
    gc.collect()
    assert removed() is None, [type(r).__name__ for r in gc.get_referrers(removed())]
    assert file_adapter._located.keys() == set(names) - {"checkout-staging"}

    # A pass of it queued before it left (a retry after a failure, say) finds it gone: its backoff goes too.
    later = Daemon(components)
    later.queue.add_rate_limited("checkout-staging", 0)
    assert later.queue.get(timeout_s=1) == "checkout-staging"
    with later.replicas.exclusive_all(["checkout-staging"]) as locks:
        later.workers.pass_("checkout-staging", {}, None, locks)
    assert "checkout-staging" not in later.queue._failures and "checkout-staging" not in later.queue
    components.store.engine.dispose()


def test_a_replica_forgets_what_it_kept_of_a_target_another_replica_took(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica keeps the whole desired state, but its memos, outcomes and caches only of the targets it leases:
    after a rebalance it holds no more of them than its share."""
    components = counted(settings, sqlite_url, monkeypatch)
    daemon = Daemon(components)
    daemon._refresh_desired()
    assert daemon._state is not None
    names = sorted(daemon._state.targets)
    batch(daemon, names)
    batch(Daemon(components), names)
    remembers = components.reconciler.assessor.remembers
    assert all(remembers(name) for name in names)

    daemon._leases_moved(set(names) - {"checkout-staging"}, {"checkout-staging"})
    assert [name for name in names if not remembers(name)] == ["checkout-staging"]
    file_adapter = components.adapters("file").inner  # type: ignore[attr-defined]
    assert "checkout-staging" not in file_adapter._located
    components.store.engine.dispose()


def held_elsewhere(lock: Any) -> bool:
    """Whether another thread holds `lock` (asked from a thread of its own, which an RLock does not let in)."""
    free: list[bool] = []

    def ask() -> None:
        free.append(lock.acquire(blocking=False))
        if free[0]:
            lock.release()

    thread = threading.Thread(target=ask)
    thread.start()
    thread.join(5)
    return free == [False]


def test_local_targets_are_worked_in_the_lane_and_the_others_never_wait_for_it(
    settings: Settings, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of targets whose adapter stays on this host (files) are worked one at a time whatever the number
    of workers, each holding the lane from its bulk read to its last pass; other batches never take the lane, so
    their passes run side by side; a batch of both is worked as two, its local targets' in the lane."""
    components = counted(settings, sqlite_url, monkeypatch)
    names = sorted(components.desired.current().targets)
    running: list[str] = []
    most = [0]
    guard = threading.Lock()
    together: list[threading.Barrier] = []
    real_reconcile = components.reconciler.reconcile

    def reconcile(names: list[str], **kw: Any) -> Any:
        with guard:
            running.append(names[0])
            most[0] = max(most[0], len(running))
        try:
            if together:  # every pass inside at once, or the barrier breaks and the pass fails
                together[0].wait()
            else:
                time.sleep(0.2)  # long enough for the other workers to come in, if nothing stops them
            return real_reconcile(names, **kw)
        finally:
            with guard:
                running.remove(names[0])

    monkeypatch.setattr(components.reconciler, "reconcile", reconcile)

    def side_by_side(daemon: Daemon) -> int:
        """The most passes in at once, one worker's batch per target."""
        most[0] = 0
        threads = [threading.Thread(target=daemon.workers.batch, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads)
        return most[0]

    assert components.adapters("file").capabilities.local
    assert side_by_side(Daemon(components)) == 1

    daemon = Daemon(components)
    lane = daemon.workers.lane
    seen: list[tuple[str, bool]] = []
    real_bulk, real_unchanged = components.reconciler.unchanged, components.reconciler.unchanged_passes
    monkeypatch.setattr(
        components.reconciler,
        "unchanged",
        lambda names: seen.append(("bulk", held_elsewhere(lane))) or real_bulk(names),
    )
    monkeypatch.setattr(
        components.reconciler,
        "unchanged_passes",
        lambda *a: seen.append(("unchanged", held_elsewhere(lane))) or real_unchanged(*a),
    )
    batch(daemon, names)  # full passes: no memo yet
    batch(Daemon(components), names)  # a memo of each
    seen.clear()
    daemon = Daemon(components)
    lane = daemon.workers.lane
    batch(daemon, names)  # unchanged passes
    assert seen == [("bulk", True), ("unchanged", True)]

    # A batch of both: the local part in the lane, then the rest outside it.
    daemon = Daemon(components)
    worked: list[tuple[list[str], bool]] = []
    real_passes_of = daemon.workers.passes_of
    monkeypatch.setattr(daemon.workers, "local", lambda batch: {names[0]} & set(batch))
    monkeypatch.setattr(
        daemon.workers,
        "passes_of",
        lambda batch: worked.append((batch, held_elsewhere(daemon.workers.lane))) or real_passes_of(batch),
    )
    batch(daemon, names)
    assert worked == [(names[1:], False), ([names[0]], True)]  # the remote ones first: they never wait

    # A bug in the remote part: the local targets, not started, are queued again, not left marked as worked.
    daemon = Daemon(components)
    monkeypatch.setattr(daemon.workers, "local", lambda batch: {names[0]} & set(batch))
    monkeypatch.setattr(daemon.workers, "passes_of", lambda batch: 1 / 0)
    for name in names:
        daemon.queue.add(name)
    first = daemon.queue.get(timeout_s=1)
    assert first is not None
    with pytest.raises(ZeroDivisionError):
        daemon.workers.batch(first)
    assert names[0] not in daemon.queue.working and names[0] in daemon.queue
    daemon.queue.close()

    file = components.adapters("file")
    monkeypatch.setattr(file, "capabilities", dataclasses.replace(file.capabilities, local=False))  # as if remote
    together.append(threading.Barrier(len(names), timeout=20))
    assert side_by_side(Daemon(components)) == len(names)
    assert not together[0].broken
    together.clear()
    seen.clear()
    daemon = Daemon(components)
    lane = daemon.workers.lane
    batch(daemon, names)
    assert seen and not any(held for _, held in seen)
    components.store.engine.dispose()


def test_a_change_seen_after_a_batch_began_reading_waits_for_a_later_pass(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's reads are made ahead of its passes: a change a watch saw after they began is not taken as
    detected by the pass of a target read before it (its detection latency waits for a pass that read after
    it); and an adapter whose reads ahead fail leaves the reads to the passes, every one of which still ends."""
    components = counted(settings, sqlite_url, monkeypatch)
    names = sorted(components.desired.current().targets)
    daemon = Daemon(components)
    watches = daemon.workers.watches
    order: list[str] = []
    real = Counting.discover

    def discover(self: Counting, target: Target) -> Observed:
        order.append(target.name)
        if len(order) == len(names):  # the last read ahead: the first target's was made before this change
            with watches._lock:
                watches._changed_at[order[0]] = time.monotonic()
                watches._adapter_of[order[0]] = "file"
        return real(self, target)

    monkeypatch.setattr(Counting, "discover", discover)
    batch(daemon, names)
    assert sorted(order) == names and order[0] in watches._changed_at  # still waiting for a pass to see it

    def broken(self: Any, targets: Any) -> Any:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(RetryingAdapter, "reading_ahead", broken)
    for name in names:
        components.reconciler.assessor.forget(name)  # full passes again, each with a read
    order.clear()
    daemon = Daemon(components)
    batch(daemon, names)
    assert sorted(order) == names and not daemon.queue.working  # each read by its pass, and every pass ended


def test_a_pass_without_drift_keeps_the_one_shared_map_of_no_drift(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the metrics keep of each target's last pass: a target without drift keeps the one read-only map of
    zeros (most targets, ~0.2 KB each otherwise), a drifting one its own counts; the text is the same."""
    components = counted(settings, sqlite_url, monkeypatch)
    state = components.desired.current()
    names = sorted(state.targets)
    targets = state.targets.values()
    components.metrics.init_targets(
        ((t.name, t.environment, t.metadata.app or "") for t in targets),
        {(t.spec.source.adapter, t.environment) for t in targets},
    )
    run = components.reconciler.reconcile(names, trigger="schedule")
    states = components.metrics.target_states
    kept = {outcome.target.name: (outcome, states._targets[outcome.target.name].drift) for outcome in run.targets}
    clean = [name for name, (outcome, drift) in kept.items() if not outcome.classified]
    drifting = [name for name, (outcome, drift) in kept.items() if outcome.classified]
    assert clean and drifting, kept
    assert all(kept[name][1] is NO_DRIFT for name in clean)
    for name in drifting:
        outcome, drift = kept[name]
        assert drift is not NO_DRIFT and sum(drift.values()) == len(outcome.classified)
    assert states.render() == render_families(states.collect())
    with pytest.raises(TypeError):
        NO_DRIFT["reversible"] = 1  # type: ignore[index]


class Recording:
    """A logger that keeps each event's fields (the daemon module's, for one test)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.events.append({"event": event, "level": level, **fields})


def test_a_new_desired_version_logs_a_bounded_list_of_the_targets_it_added(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log names the first LOGGED_NAMES targets added and removed, with their counts: a start adds every
    target, and 100,000 names in one line were ~1 MB."""
    monkeypatch.setattr(daemon_module, "LOGGED_NAMES", 2)
    logged: list[dict[str, Any]] = []
    monkeypatch.setattr(daemon_module, "log", Recording(logged))
    components = counted(settings, sqlite_url, monkeypatch)
    daemon = Daemon(components)
    names = sorted(components.desired.current().targets)
    assert len(names) > 2
    daemon._refresh_desired()
    loaded = [e for e in logged if e["event"] == "desired state loaded"]
    assert len(loaded) == 1
    assert loaded[0]["added"] == names[:2] and loaded[0]["added_count"] == len(names)
    assert loaded[0]["removed"] == [] and loaded[0]["removed_count"] == 0

    for manifest in settings.desired_dir.glob("*.yaml"):  # every target's manifest gone but the first
        if names[0] not in manifest.read_text():
            manifest.unlink()
    logged.clear()
    daemon._refresh_desired()
    loaded = [e for e in logged if e["event"] == "desired state loaded"]
    gone = sorted(set(names) - set(components.desired.current().targets))
    assert len(loaded) == 1 and gone
    assert loaded[0]["removed"] == gone[:2] and loaded[0]["removed_count"] == len(gone)
    components.store.engine.dispose()
