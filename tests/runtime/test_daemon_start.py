"""The daemon listens before its first desired-state load, which takes minutes with 100,000 targets: /readyz
answers (503, not loaded) meanwhile, and a desired state that is invalid at start stops it with the error and
nothing left listening."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.domain.manifest import DesiredVersion, DriftOp
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.errors import ConfigurationError, StoreUnavailable
from reconciler.runtime import daemon as daemon_module
from reconciler.runtime import heap, probes
from reconciler.runtime.compose import build
from reconciler.runtime.daemon import Daemon
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate, tables


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def daemon_settings(settings: Settings, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    monkeypatch.setattr(daemon_module.signal, "signal", lambda *_: None)  # pytest keeps its own handlers
    return settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})})


def test_readyz_answers_while_the_first_load_runs(daemon_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    components = build(daemon_settings, daemon=True)
    assert not components.desired.loaded  # the daemon's parts are built without loading it
    loading, release = threading.Event(), threading.Event()
    real = components.desired.current

    def slow(pause: Any = None) -> Any:
        loading.set()
        assert release.wait(30)
        return real(pause)

    monkeypatch.setattr(components.desired, "current", slow)
    daemon = Daemon(components)
    seen: list[tuple[int, dict[str, Any]]] = []
    intervals: list[float] = []
    before = sys.getswitchinterval()

    def probe() -> None:
        try:
            assert loading.wait(30)
            intervals.append(sys.getswitchinterval())
            port = daemon.http.address[1]
            seen.append(readyz(port))
            release.set()
            for _ in range(300):
                status, detail = readyz(port)
                if status == 200:
                    seen.append((status, detail))
                    break
                threading.Event().wait(0.05)
        finally:
            release.set()
            daemon.stopping.set()

    prober = threading.Thread(target=probe)
    prober.start()
    assert daemon.run() == 0
    prober.join(10)
    (status, detail), (ready_status, ready) = seen
    assert status == 503 and detail["desired_loaded"] is False and detail["ready"] is False
    assert ready_status == 200 and ready["desired_loaded"] is True
    # While it ran, threads took turns of SWITCH_INTERVAL_S (answers wait less for the lock); its stop set
    # the interpreter's interval back.
    assert intervals == [probes.SWITCH_INTERVAL_S] != [before]
    assert sys.getswitchinterval() == before
    components.store.engine.dispose()


def test_an_invalid_desired_state_at_start_leaves_nothing_listening(daemon_settings: Settings) -> None:
    (daemon_settings.desired_dir / "bad.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: no}\n")
    components = build(daemon_settings, daemon=True)
    daemon = Daemon(components)
    ports: list[int] = []
    start = daemon.http.start

    def started() -> None:
        start()
        ports.append(daemon.http.address[1])

    daemon.http.start = started  # type: ignore[method-assign]
    before = sys.getswitchinterval()
    with pytest.raises(ConfigurationError, match=r"bad.yaml: document 1 \(p\): spec.default"):
        daemon.run()
    assert ports  # it listened, and no longer does
    assert sys.getswitchinterval() == before  # and it set the interpreter's switch interval back
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", ports[0]), timeout=2):
        pass
    # The lock was let go: a daemon started again on the same database gets it.
    again = build(daemon_settings, daemon=True).lock()
    again.acquire()
    again.release()
    components.store.engine.dispose()


def test_the_heap_counts_as_built_once_the_daemon_has_caught_up_with_its_first_cycle(
    daemon_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """runtime/heap.py: no thaw while the load and the first cycle build the heap. The first cycle is over when
    targets are queued and none is due; a daemon that never catches up ends the growth after GROWTH_LIMIT_S."""
    daemon = Daemon(build(daemon_settings, daemon=True))
    again: list[str] = []
    jobs: dict[str, tuple[object, float]] = {}
    monkeypatch.setattr(daemon.scheduler, "once", lambda job_id, *_: again.append(job_id))
    monkeypatch.setattr(daemon.scheduler, "add_job", lambda job_id, f, every: jobs.__setitem__(job_id, (f, every)))
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0)
    policy.expect_growth()
    now = time.monotonic()

    daemon._caught_up(policy, now)  # nothing queued yet: the load has not queued the first passes
    assert policy.growing and again == ["caught-up"]
    daemon.queue.add("a")
    daemon.queue.add("b", 60)
    daemon._caught_up(policy, now)  # a is due
    assert policy.growing and len(again) == 2 and not jobs
    assert daemon.queue.get(1) == "a"
    daemon.queue.done("a")
    daemon._caught_up(policy, now)  # b waits for its interval: caught up
    assert not policy.growing and len(again) == 2  # the heap counts as built (runtime/heap.py tests the rest)
    assert jobs == {"gc": (policy.settle, heap.SETTLE_S)}  # from now on, a full collection at least that often

    overloaded = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0)
    overloaded.expect_growth()
    daemon.queue.add("a")
    jobs.clear()
    daemon._caught_up(overloaded, now - daemon_module.GROWTH_LIMIT_S - 1)
    assert not overloaded.growing and jobs == {"gc": (overloaded.settle, heap.SETTLE_S)}


def test_one_daemon_settles_what_a_dead_command_of_this_host_left_in_flight_while_it_runs(
    daemon_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `reconciler apply` of this host killed while the daemon runs leaves a write in flight, which holds its
    target's writes (engine/unsettled.py): the daemon settles it at its next recovery (RECOVER_EVERY_S), not
    only at its own start. A store that cannot be asked then is logged, and the next recovery tries again."""
    components = build(daemon_settings, daemon=True)
    daemon = Daemon(components)
    jobs: dict[str, float] = {}
    monkeypatch.setattr(daemon.scheduler, "add_job", lambda job_id, _f, every: jobs.__setitem__(job_id, every))
    monkeypatch.setattr(daemon.workers, "start", lambda _count: daemon.stopping.set())  # start, then stop
    assert daemon.run() == 0
    assert jobs["recover"] == daemon_module.RECOVER_EVERY_S and "leases" not in jobs

    store = components.store
    store.ensure_version(DesiredVersion("v" * 64), "/d")
    run = store.start_run(RunKind.APPLY, "cli", "v" * 64, owner="x")  # no process of this host: gone
    action = Action(str(uuid.uuid4()), run, "gone", ("a",), DriftOp.CHANGE, 1, 2, "v" * 64, "r")
    store.record_actions([action.with_state(ActionState.STAGED)])

    def unreachable() -> list[tuple[str, str | None]]:
        raise StoreUnavailable("the database is gone")

    with monkeypatch.context() as patched:
        patched.setattr(store, "unfinished_runs", unreachable)
        daemon._recover()  # logged, not raised: the scheduler's thread goes on
    assert [a.state for a in store.actions(run)] == [ActionState.STAGED]
    daemon._recover()
    settled = store.run(run)
    assert settled is not None and settled.status is RunStatus.FAILED
    assert [a.state for a in store.actions(run)] == [ActionState.FAILED]  # its target is no longer defined
    store.engine.dispose()


def test_a_replica_heartbeats_as_joining_while_its_first_load_runs(
    daemon_settings: Settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas on PostgreSQL: while the daemon loads the desired state, its row in `replicas` says joining (the
    others then leave it its share of the free targets, store/leases.py); once loaded, it claims as a ready
    replica. A load that fails takes its row away."""
    engine = engines.create_engine(postgres_url)
    migrate.upgrade(engine)
    settings = daemon_settings.model_copy(update={"database_url": postgres_url})

    def rows() -> dict[str, bool]:
        with engine.connect() as conn:
            return {row.id: row.joining for row in conn.execute(sa.select(tables.replicas))}

    components = build(settings, daemon=True)
    daemon = Daemon(components)
    owner = daemon.replicas.owner
    seen: dict[str, dict[str, bool]] = {}
    real = components.desired.current

    def slow(pause: Any = None) -> Any:
        if "loading" not in seen:  # the first call is the load: what the table says meanwhile
            deadline = time.monotonic() + 10
            while owner not in rows() and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["loading"] = rows()
        return real(pause)

    monkeypatch.setattr(components.desired, "current", slow)
    monkeypatch.setattr(daemon.workers, "start", lambda _count: daemon.stopping.set())  # start, then stop
    stop = daemon.stop

    def stopping() -> int:
        seen["loaded"] = rows()
        return stop()

    monkeypatch.setattr(daemon, "stop", stopping)
    assert daemon.run() == 0
    assert seen["loading"] == {owner: True}
    assert seen["loaded"] == {owner: False}  # its first tick, as the load queued the first passes
    assert rows() == {}  # a clean stop gives its leases and its row back
    components.store.engine.dispose()

    (settings.desired_dir / "bad.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: no}\n")
    failing = build(settings, daemon=True)
    with pytest.raises(ConfigurationError):
        Daemon(failing).run()
    assert rows() == {}  # this process's row, written as joining, went with the failed load
    failing.store.engine.dispose()
    engine.dispose()
