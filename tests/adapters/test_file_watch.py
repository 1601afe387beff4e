"""The file adapter's watch on a real filesystem (inotify through watchfiles): writes, editors' rename-over,
delete and create, a ConfigMap volume's `..data` swap, a folder that appears later; thousands of files cost
one watcher and a watch per folder."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.file import FileAdapter
from reconciler.adapters.file_watch import _Layout
from reconciler.desired.loader import load
from reconciler.domain.manifest import Target
from reconciler.settings import FileSettings


class Watching:
    """A running watch and what it reported."""

    def __init__(self, adapter: FileAdapter, targets: list[Target]) -> None:
        self.woken: list[tuple[float, str]] = []
        self.established = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(adapter, targets), daemon=True)
        self.thread.start()
        assert self.established.wait(5), "the watch never said it was established"

    def _run(self, adapter: FileAdapter, targets: list[Target]) -> None:
        try:
            adapter.watch(
                targets, lambda name: self.woken.append((time.monotonic(), name)), self.established.set, self.stop
            )
        except BaseException as exc:  # reported by close()
            self.error = exc

    def wait_for(self, name: str, since: float, within: float = 2.0) -> float:
        deadline = since + within
        while time.monotonic() < deadline:
            hits = [at for at, woken in self.woken if woken == name and at >= since]
            if hits:
                return hits[0] - since
            time.sleep(0.005)
        raise AssertionError(f"{name} was not woken within {within}s; woken: {self.woken[-5:]}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(3)
        assert not self.thread.is_alive(), "the watch did not end when asked to"
        assert self.error is None, self.error


def fleet(tmp_path: Path, files: dict[str, str]) -> dict[str, Target]:
    """A target per entry: name -> live path (relative to tmp_path/live)."""
    desired = tmp_path / "desired"
    desired.mkdir(exist_ok=True)
    docs = [
        f"kind: Target\nmetadata: {{name: {name}}}\nspec:\n  source: {{adapter: file, path: ../live/{path}, format: yaml}}\n"
        "  desired: {}\n"
        for name, path in files.items()
    ]
    (desired / "targets.yaml").write_text("---\n".join(docs))
    return load(desired).targets


@pytest.fixture
def live(tmp_path: Path) -> Path:
    (tmp_path / "live").mkdir()
    return tmp_path / "live"


@pytest.fixture
def watching(tmp_path: Path, live: Path, request: pytest.FixtureRequest) -> Iterator[Watching]:
    files: dict[str, str] = request.param
    for path in files.values():
        if "missing" not in path:
            (live / path).parent.mkdir(parents=True, exist_ok=True)
            (live / path).write_text("a: 1\n")
    targets = fleet(tmp_path, files)
    running = Watching(FileAdapter(FileSettings(roots=[live])), list(targets.values()))
    yield running
    running.close()


@pytest.mark.parametrize("watching", [{"app": "app.yaml", "other": "other.yaml"}], indirect=True)
def test_a_write_wakes_its_target_only(live: Path, watching: Watching) -> None:
    at = time.monotonic()
    (live / "app.yaml").write_text("a: 2\n")
    assert watching.wait_for("app", at) < 0.3
    time.sleep(0.2)
    assert [name for when, name in watching.woken if when >= at] == ["app"]


@pytest.mark.parametrize("watching", [{"one": "shared.yaml", "two": "shared.yaml", "own": "own.yaml"}], indirect=True)
def test_a_write_to_a_shared_file_wakes_each_of_its_targets(live: Path, watching: Watching) -> None:
    """A path is kept with its one target, or with the set of them when targets share the file."""
    at = time.monotonic()
    (live / "shared.yaml").write_text("a: 2\n")
    assert watching.wait_for("one", at) < 0.3 and watching.wait_for("two", at) < 0.3
    time.sleep(0.2)
    assert {name for when, name in watching.woken if when >= at} == {"one", "two"}
    at = time.monotonic()
    (live / "own.yaml").write_text("a: 2\n")
    assert watching.wait_for("own", at) < 0.3
    time.sleep(0.2)
    assert [name for when, name in watching.woken if when >= at] == ["own"]


def test_a_paths_targets_are_kept_as_one_name_until_a_second_shares_it() -> None:
    layout = _Layout()
    layout.add("a", "/live/a.yaml", "/live/..data/a.yaml")
    layout.add("b", "/live/b.yaml", "/live/b.yaml")
    layout.add("c", "/live/b.yaml", "/live/b.yaml")
    layout.add("c", "/live/b.yaml", "/live/b.yaml")  # the same target again: no set
    assert layout.by_path == {"/live/a.yaml": "a", "/live/..data/a.yaml": "a", "/live/b.yaml": {"b", "c"}}
    assert layout.targets_of("/live/a.yaml") == ({"a"}, False)
    assert layout.targets_of("/live/b.yaml") == ({"b", "c"}, False)
    assert layout.targets_of("/live/..data") == ({"a", "b", "c"}, True)  # a swap: every target of the folder
    assert layout.targets_of("/elsewhere") == (set(), False)
    found, _ = layout.targets_of("/live/b.yaml")
    found.add("x")  # the caller's own set
    assert layout.by_path["/live/b.yaml"] == {"b", "c"}


@pytest.mark.parametrize("watching", [{"app": "app.yaml"}], indirect=True)
def test_an_editors_rename_over_and_a_delete_and_create_are_seen(live: Path, watching: Watching) -> None:
    at = time.monotonic()
    (live / ".app.yaml.swp").write_text("a: 3\n")
    os.replace(live / ".app.yaml.swp", live / "app.yaml")  # vim, sed -i, most editors
    assert watching.wait_for("app", at) < 0.3
    at = time.monotonic()
    (live / "app.yaml").unlink()
    assert watching.wait_for("app", at) < 0.3
    at = time.monotonic()
    (live / "app.yaml").write_text("a: 4\n")
    assert watching.wait_for("app", at) < 0.3


@pytest.mark.parametrize("watching", [{"app": "missing/app.yaml"}], indirect=True)
def test_a_folder_that_appears_later_is_watched_from_then_on(live: Path, watching: Watching) -> None:
    (live / "missing").mkdir()
    time.sleep(0.6)  # the watch looks for new folders at least every 0.2 s
    at = time.monotonic()
    (live / "missing" / "app.yaml").write_text("a: 1\n")
    assert watching.wait_for("app", at) < 0.5


def test_a_configmap_volume_swap_is_followed(tmp_path: Path, live: Path) -> None:
    """A ConfigMap volume: app.yaml -> ..data/app.yaml, ..data -> ..v1; an update writes ..v2 and renames a new
    ..data symlink over the old one. The target wakes, and later writes in ..v2 wake it too."""
    volume = live / "config"
    (volume / "..v1").mkdir(parents=True)
    (volume / "..v1" / "app.yaml").write_text("a: 1\n")
    os.symlink("..v1", volume / "..data")
    os.symlink("..data/app.yaml", volume / "app.yaml")
    targets = fleet(tmp_path, {"app": "config/app.yaml"})
    running = Watching(FileAdapter(FileSettings(roots=[live])), list(targets.values()))
    try:
        (volume / "..v2").mkdir()
        (volume / "..v2" / "app.yaml").write_text("a: 2\n")
        os.symlink("..v2", volume / "..data_tmp")
        at = time.monotonic()
        os.replace(volume / "..data_tmp", volume / "..data")
        assert running.wait_for("app", at) < 0.3
        time.sleep(0.3)  # the files are resolved again
        at = time.monotonic()
        (volume / "..v2" / "app.yaml").write_text("a: 3\n")
        assert running.wait_for("app", at) < 0.3
    finally:
        running.close()


def test_thousands_of_files_cost_one_watcher_and_a_watch_per_folder(tmp_path: Path, live: Path) -> None:
    files = {f"t{i:04}": f"{['a', 'b', 'c'][i % 3]}/t{i:04}.yaml" for i in range(3000)}
    for path in files.values():
        (live / path).parent.mkdir(exist_ok=True)
        (live / path).write_text("a: 1\n")
    before = _inotify()
    running = Watching(FileAdapter(FileSettings(roots=[live])), list(fleet(tmp_path, files).values()))
    try:
        instances, watches = _inotify()
        assert instances - before[0] == 1 and watches - before[1] == 3
        at = time.monotonic()
        (live / "b" / "t2998.yaml").write_text("a: 2\n")
        assert running.wait_for("t2998", at) < 0.3
    finally:
        running.close()


def test_watching_can_be_turned_off(live: Path) -> None:
    assert FileAdapter(FileSettings(roots=[live])).capabilities.watch
    assert not FileAdapter(FileSettings(roots=[live], watch=False)).capabilities.watch


def _inotify() -> tuple[int, int]:
    """inotify instances of this process and the watches they hold, from /proc."""
    instances = watches = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            text = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        instances += 1
        watches += sum(1 for line in text.splitlines() if line.startswith("inotify wd:"))
    return instances, watches
