"""The watch supervisor: debounced wake-ups, re-established watches, restarts when the targets change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml

from reconciler.desired.loader import load
from reconciler.domain.manifest import Target
from reconciler.domain.state import DesiredState
from reconciler.errors import DiscoveryError
from reconciler.observe.metrics import Metrics
from reconciler.ports import Capabilities
from reconciler.runtime.queue import WorkQueue
from reconciler.runtime.watch import WatchSupervisor


class ScriptedWatcher:
    """A watcher whose first `breaks` watches fail at once; later ones report what `emit` is given."""

    capabilities = Capabilities(watch=True)

    def __init__(self, breaks: int = 0) -> None:
        self.breaks = breaks
        self.calls: list[list[str]] = []
        self.emit: Callable[[str], None] | None = None
        self.ready = threading.Event()

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        self.calls.append(sorted(t.name for t in targets))
        if len(self.calls) <= self.breaks:
            raise DiscoveryError("connection reset")
        self.emit = changed
        ready()
        self.ready.set()
        stop.wait()


def state(
    folder: Path, names: Sequence[str], prefix: str = "/a/", previous: DesiredState | None = None
) -> DesiredState:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    for name in names:
        doc = {
            "kind": "Target",
            "metadata": {"name": name},
            "spec": {"source": {"adapter": "etcd", "prefix": prefix + name}, "desired": {}},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    if not names:  # a desired state with no watchable target
        (folder / "p.yaml").write_text("kind: Policy\nmetadata: {name: p}\nspec: {default: reversible}\n")
    return load(folder, previous=previous)


class Edits:
    """Desired states of one folder one after the other: each loaded after the last (the daemon's reloads, whose
    changes the watches go by) or on its own (walked in full)."""

    def __init__(self, folder: Path, chained: bool) -> None:
        self.folder, self.chained = folder, chained
        self.last: DesiredState | None = None

    def __call__(self, names: Sequence[str], prefix: str = "/a/") -> DesiredState:
        return self.load(lambda previous: state(self.folder, names, prefix, previous))

    def load(self, how: Callable[[DesiredState | None], DesiredState] | None = None) -> DesiredState:
        previous = self.last if self.chained else None
        self.last = how(previous) if how is not None else load(self.folder, previous=previous)
        assert (self.last.changes is not None) is (previous is not None)
        return self.last


CHAINED = pytest.mark.parametrize("chained", [False, True], ids=["apart", "after"])


def test_a_burst_of_changes_is_one_queued_pass(tmp_path: Path) -> None:
    watcher = ScriptedWatcher()
    queue = WorkQueue()
    metrics = Metrics()
    supervisor = WatchSupervisor(queue, lambda a: watcher if a == "etcd" else None, metrics, debounce_s=0.2)
    supervisor.sync(state(tmp_path / "d", ["a", "b"]))
    try:
        assert watcher.ready.wait(5)
        assert watcher.calls == [["a", "b"]]
        assert metrics.registry.get_sample_value("reconciler_watches", {"adapter": "etcd"}) == 2
        # Established: each target is looked at once, for what changed before the watch was up.
        assert sorted([queue.get(1) or "", queue.get(1) or ""]) == ["a", "b"]
        queue.done("a")
        queue.done("b")
        assert watcher.emit is not None
        for _ in range(20):
            watcher.emit("a")
        watcher.emit("not-mine")  # a change of something this watch does not cover is ignored
        assert len(queue) == 1
        assert queue.get(0.05) is None  # debounced
        assert queue.get(1) == "a"
        started = time.monotonic() - 1
        assert metrics.registry.get_sample_value("reconciler_watch_events_total", {"adapter": "etcd"}) == 20
        assert metrics.registry.get_sample_value("reconciler_watches", {"adapter": "etcd"}) == 2
        supervisor.pass_done("a", started)  # began before the changes: no latency observed
        supervisor.pass_done("a", time.monotonic())
        count = metrics.registry.get_sample_value("reconciler_detection_latency_seconds_count", {"adapter": "etcd"})
        assert count == 1
    finally:
        supervisor.stop()


def test_a_broken_watch_is_re_established_and_its_targets_looked_at(tmp_path: Path) -> None:
    watcher = ScriptedWatcher(breaks=2)
    queue = WorkQueue()
    metrics = Metrics()
    supervisor = WatchSupervisor(queue, lambda a: watcher, metrics, backoff_max_s=0.3)
    supervisor.sync(state(tmp_path / "d", ["a"]))
    try:
        time.sleep(0.05)  # the first attempts break at once, before any backoff is over
        assert metrics.registry.get_sample_value("reconciler_watches", {"adapter": "etcd"}) in (None, 0)
        assert watcher.ready.wait(5)
        assert len(watcher.calls) == 3
        assert metrics.registry.get_sample_value("reconciler_watch_errors_total", {"adapter": "etcd"}) == 2
        assert queue.get(1) == "a"  # what changed while the watch was down is found by a pass
    finally:
        supervisor.stop()
    assert metrics.registry.get_sample_value("reconciler_watches", {"adapter": "etcd"}) == 0


@CHAINED
def test_the_watch_restarts_only_when_its_targets_change(tmp_path: Path, chained: bool) -> None:
    watcher = ScriptedWatcher()
    supervisor = WatchSupervisor(WorkQueue(), lambda a: watcher, Metrics())
    edits = Edits(tmp_path / "d", chained)
    try:
        supervisor.sync(edits(["a"]))
        assert watcher.ready.wait(5)
        supervisor.sync(edits(["a"]))  # the same targets: the watch goes on
        assert watcher.calls == [["a"]]
        watcher.ready.clear()
        supervisor.sync(edits(["a", "b"]))
        assert watcher.ready.wait(5)
        assert watcher.calls == [["a"], ["a", "b"]]
        watcher.ready.clear()
        supervisor.sync(edits(["a", "b"], prefix="/other/"))  # a source option changed
        assert watcher.ready.wait(5)
        assert len(watcher.calls) == 3
        watcher.ready.clear()
        supervisor.sync(edits(["a", "c"], prefix="/other/"))  # as many targets, one of them another
        assert watcher.ready.wait(5)
        assert watcher.calls[3:] == [["a", "c"]]
        watcher.ready.clear()
        supervisor.sync(edits(["a"], prefix="/other/"))  # one went
        assert watcher.ready.wait(5)
        assert watcher.calls[4:] == [["a"]]
        supervisor.sync(edits([]))
        assert supervisor._running == {}
    finally:
        supervisor.stop()


@CHAINED
def test_a_replica_restarts_a_watch_for_the_targets_it_holds_alone(tmp_path: Path, chained: bool) -> None:
    """A replica watches the targets it holds: another replica's target that came, changed its source or went
    leaves its watch as it is; one of its own restarts it."""
    watcher = ScriptedWatcher()
    asked: list[str] = []
    supervisor = WatchSupervisor(WorkQueue(), lambda a: asked.append(a) or watcher, Metrics())
    edits = Edits(tmp_path / "d", chained)
    try:
        supervisor.hold({"a", "c"})
        supervisor.sync(edits(["a", "b"]))
        assert watcher.ready.wait(5)
        assert watcher.calls == [["a"]]
        asked.clear()
        move(edits.folder / "b.yaml", {"adapter": "etcd", "prefix": "/elsewhere/b"})
        supervisor.sync(edits.load())  # another replica's target, elsewhere now
        (edits.folder / "b.yaml").unlink()
        supervisor.sync(edits.load())  # and gone
        assert watcher.calls == [["a"]]
        assert asked == ([] if chained else ["etcd", "etcd"])  # loaded after the last: no walk of every target
        watcher.ready.clear()
        supervisor.sync(edits(["a", "c"]))  # one of its own came
        assert watcher.ready.wait(5)
        assert watcher.calls == [["a"], ["a", "c"]]
        assert set(supervisor._running["etcd"].covered) == {"a", "c"}
    finally:
        supervisor.stop()


def test_an_edit_of_desired_values_alone_keeps_the_watch_and_walks_only_what_changed(tmp_path: Path) -> None:
    """A reload that changed what some targets want, not where they are, goes on with the same watch. The
    loader's changes say which targets to look at: whether the adapter watches is not asked again (once per
    target, at 100,000 targets, that was 1.1 s of a reload while probes waited for the interpreter), and a
    state not loaded after the one synced is walked in full, asking once per adapter."""
    watcher = ScriptedWatcher()
    asked: list[str] = []

    def watching(adapter: str) -> ScriptedWatcher:
        asked.append(adapter)
        return watcher

    supervisor = WatchSupervisor(WorkQueue(), watching, Metrics())
    folder = tmp_path / "d"
    try:
        first = state(folder, ["a", "b", "c"])
        supervisor.sync(first)
        assert watcher.ready.wait(5)
        doc = yaml.safe_load((folder / "b.yaml").read_text())
        doc["spec"]["desired"] = {"LOG_LEVEL": "info"}
        (folder / "b.yaml").write_text(yaml.safe_dump(doc))
        edited = load(folder, previous=first)
        assert edited.targets["a"] is first.targets["a"] and edited.targets["b"] is not first.targets["b"]
        asked.clear()
        supervisor.sync(edited)
        assert watcher.calls == [["a", "b", "c"]]
        assert asked == []
        assert supervisor._running["etcd"].covered["b"] is edited.targets["b"]  # the replaced object is let go
        doc["spec"]["desired"] = {"LOG_LEVEL": "warn"}
        (folder / "b.yaml").write_text(yaml.safe_dump(doc))
        apart = load(folder)  # loaded on its own: no changes to go by
        supervisor.sync(apart)
        assert watcher.calls == [["a", "b", "c"]]
        assert asked == ["etcd"]
        assert supervisor._running["etcd"].covered["b"] is apart.targets["b"]
    finally:
        supervisor.stop()


@CHAINED
def test_a_target_that_moves_to_an_adapter_that_cannot_watch_leaves_its_watch(tmp_path: Path, chained: bool) -> None:
    watcher = ScriptedWatcher()
    supervisor = WatchSupervisor(WorkQueue(), {"etcd": watcher}.get, Metrics())
    edits = Edits(tmp_path / "d", chained)
    try:
        supervisor.sync(edits(["a", "b"]))
        assert watcher.ready.wait(5)
        watcher.ready.clear()
        move(edits.folder / "b.yaml", {"adapter": "natskv", "bucket": "cfg", "key": "b"})
        supervisor.sync(edits.load())
        assert watcher.ready.wait(5)
        assert watcher.calls == [["a", "b"], ["a"]]
        assert set(supervisor._running["etcd"].covered) == {"a"}
    finally:
        supervisor.stop()


@CHAINED
def test_a_target_that_moves_to_another_watching_adapter_keeps_its_latency_there(tmp_path: Path, chained: bool) -> None:
    """Restarting the old adapter's watch (after the new one started, in name order) forgets only what is still
    that adapter's: the moved target's change-to-pass latency is observed under its new adapter."""
    watchers = {"etcd": ScriptedWatcher(), "natskv": ScriptedWatcher()}
    supervisor = WatchSupervisor(WorkQueue(), watchers.get, Metrics())
    edits = Edits(tmp_path / "d", chained)
    try:
        edits(["a", "b"])
        for name in ("a", "b"):
            move(edits.folder / f"{name}.yaml", {"adapter": "natskv", "bucket": "cfg", "key": name})
        supervisor.sync(edits.load())
        move(edits.folder / "b.yaml", {"adapter": "etcd", "prefix": "/a/b"})
        supervisor.sync(edits.load())  # etcd starts with b, then natskv restarts with a alone
        assert watchers["etcd"].ready.wait(5)
        assert supervisor._adapter_of == {"a": "natskv", "b": "etcd"}
    finally:
        supervisor.stop()


def move(manifest: Path, source: dict[str, str]) -> None:
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["source"] = source
    manifest.write_text(yaml.safe_dump(doc))
