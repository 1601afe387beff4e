"""The desired folder's watcher (desired/watch.py): a look walks the manifest files only after an event in the
folder, when a full look is due, while the watcher is not in place, or when the root moved to another folder.
Real inotify events on a temporary folder."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.desired.source import DesiredSource
from reconciler.desired.watch import FolderWatch
from tests.desired.test_reload import target, write


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


class Counted(DesiredSource):
    walks = 0

    def _signature_now(self) -> frozenset:  # type: ignore[type-arg]
        self.walks += 1
        return super()._signature_now()


def watched(folder: Path, stop: threading.Event) -> Counted:
    """A source over `folder` with its watcher established and one look made since."""
    source = Counted(folder)
    source.current()
    source.watch(stop)
    assert source._watch is not None
    eventually(lambda: source._watch is not None and source._watch._watching is not None, "the watch in place")
    source.current()  # the look after the watch is in place
    return source


def test_a_look_walks_the_folder_only_after_an_event_there(tmp_path: Path, stop: threading.Event) -> None:
    write(tmp_path, "a.yaml", target("a"))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "b.yaml", target("b"))
    source = watched(tmp_path, stop)
    walks = source.walks
    for _ in range(5):
        assert set(source.current().targets) == {"a", "b"}
    assert source.walks == walks  # nothing happened: no walk

    write(tmp_path / "sub", "c.yaml", target("c"))  # in a subfolder: the watch is recursive
    eventually(lambda: "c" in source.current().targets, "the new manifest loaded")
    assert source.walks > walks
    walks = source.walks
    source.current()
    assert source.walks == walks  # quiet again

    write(tmp_path, "a.yaml", target("a", "{x: 2}"))  # an edit in place
    eventually(lambda: source.current().targets["a"].spec.desired == {"x": 2}, "the edit loaded")


def test_events_under_git_do_not_make_a_look_walk(tmp_path: Path, stop: threading.Event) -> None:
    write(tmp_path, "a.yaml", target("a"))
    (tmp_path / ".git").mkdir()
    source = watched(tmp_path, stop)
    walks = source.walks
    for i in range(20):  # a fetch writes objects there
        write(tmp_path / ".git", f"object{i}", "x")
    time.sleep(0.5)
    source.current()
    assert source.walks == walks
    write(tmp_path, "b.yaml", target("b"))
    eventually(lambda: "b" in source.current().targets, "the manifest beside .git loaded")


def test_a_full_look_comes_whatever_the_watcher_says(tmp_path: Path, stop: threading.Event) -> None:
    """Events can be lost (an inotify queue overflow) or never sent (NFS): a full look is made anyway."""
    write(tmp_path, "a.yaml", target("a"))
    watch = FolderWatch(tmp_path, stop, full_look_s=0.3)
    watch.start()
    eventually(lambda: watch._watching is not None, "the watch in place")
    watch.looking()
    assert watch.quiet()
    time.sleep(0.35)
    assert not watch.quiet()


def test_a_look_walks_every_time_while_the_watcher_is_not_in_place(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", target("a"))
    source = Counted(tmp_path)
    source.current()
    source.watch(threading.Event())
    assert source._watch is not None
    source._watch.stop.set()  # the watcher stops at once: never in place
    eventually(
        lambda: (
            source._watch is not None and source._watch._thread is not None and not source._watch._thread.is_alive()
        ),
        "the watcher to stop",
    )
    walks = source.walks
    source.current()
    source.current()
    assert source.walks == walks + 2


def test_a_root_that_moves_to_another_folder_is_walked_and_watched_there(tmp_path: Path, stop: threading.Event) -> None:
    """A git-sync style checkout: the desired folder is a symlink swapped to a new revision's folder."""
    one, two = tmp_path / "rev1", tmp_path / "rev2"
    one.mkdir()
    two.mkdir()
    write(one, "a.yaml", target("a"))
    write(two, "b.yaml", target("b"))
    root = tmp_path / "current"
    root.symlink_to(one)
    source = watched(root, stop)
    assert set(source.current().targets) == {"a"}
    swap = tmp_path / "current.new"
    swap.symlink_to(two)
    os.replace(swap, root)  # no event inside rev1 says so
    assert set(source.current().targets) == {"b"}
    assert source._watch is not None
    eventually(lambda: source._watch is not None and source._watch._watching == str(two), "the watch on rev2")
    source.current()
    write(two, "c.yaml", target("c"))
    eventually(lambda: "c" in source.current().targets, "an edit in the new folder loaded")
