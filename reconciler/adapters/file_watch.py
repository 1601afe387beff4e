"""Watching live files: one inotify watcher (through watchfiles) over the folders of every file target, so that
a change wakes its target at once instead of at its next interval.

Folders are watched, not files: an editor's write-to-temp-then-rename, a file deleted and created again, and a
Kubernetes ConfigMap volume's `..data` symlink swap all show as events in the folder. Each event is matched
to the targets whose file it names (by the path the manifest gives and by the file it resolves to); an event
on a `..`-name (the ConfigMap swap) wakes every target of that folder and resolves their files again.
Thousands of files in a few folders cost one watcher and a watch per folder.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import watchfiles

from reconciler.domain.manifest import Target
from reconciler.errors import DiscoveryError, ReconcilerError
from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.adapters.file_watch")

DEBOUNCE_MS = 20  # how long watchfiles gathers events into one batch (its default, 1.6 s, is far too slow here)
STEP_MS = 10
TIMEOUT_MS = 200  # how often the loop looks at `stop` when nothing happens


@dataclass
class _Layout:
    """Which targets each watched path concerns."""

    # A file path (as given, and resolved) -> its target, or a set of them when targets share the file: a set of
    # one name for each of a watched fleet's paths took 430 bytes a target.
    by_path: dict[str, str | set[str]] = field(default_factory=dict)
    by_folder: dict[str, set[str]] = field(default_factory=dict)  # a folder as given -> targets of files in it
    folders: set[str] = field(default_factory=set)  # what to watch: every such folder that exists

    def add(self, name: str, given: str, real: str) -> None:
        for path in (given,) if real == given else (given, real):
            held = self.by_path.setdefault(path, name)
            if isinstance(held, set):
                held.add(name)
            elif held != name:
                self.by_path[path] = {held, name}
            self.folders.add(os.path.dirname(path))
        self.by_folder.setdefault(os.path.dirname(given), set()).add(name)

    def targets_of(self, path: str) -> tuple[set[str], bool]:
        """The targets an event at `path` concerns, and whether files must be resolved again (a `..` swap)."""
        held = self.by_path.get(path)
        found = set() if held is None else {held} if isinstance(held, str) else set(held)
        if os.path.basename(path).startswith(".."):
            return found | self.by_folder.get(os.path.dirname(path), set()), True
        return found, False


def watch_files(
    targets: Sequence[Target],
    locate: Callable[[Target], tuple[str, str]],
    changed: Callable[[str], None],
    ready: Callable[[], None],
    stop: threading.Event,
) -> None:
    """The Watcher protocol for file targets; `locate(target)` gives (path as given, resolved path)."""
    announced = False
    while not stop.is_set():
        layout = _layout(targets, locate)
        watched = sorted(f for f in layout.folders if os.path.isdir(f))
        if not watched:  # nothing to watch yet: the passes (at their interval) report the missing folders
            if not announced:
                ready()
                announced = True
            stop.wait(TIMEOUT_MS / 1000)
            continue
        relocate = False
        try:
            batches = watchfiles.watch(
                *watched,
                stop_event=stop,
                recursive=False,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                rust_timeout=TIMEOUT_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,
            )
            for batch in batches:
                if not announced:  # the first batch (or timeout) comes once the watcher is established
                    ready()
                    announced = True
                relocate = _dispatch(layout, (path for _, path in batch), changed)
                if relocate or _folders_appeared(layout, watched):
                    break
        except (OSError, RuntimeError) as exc:  # inotify limits, a folder that vanished: re-established
            raise DiscoveryError(f"file watch: {type(exc).__name__}: {exc}") from None
        if not relocate and not stop.is_set() and not _folders_appeared(layout, watched):
            return  # watchfiles ended by itself: the supervisor re-establishes the watch


def _layout(targets: Sequence[Target], locate: Callable[[Target], tuple[str, str]]) -> _Layout:
    layout = _Layout()
    for target in targets:
        try:
            given, real = locate(target)
        except ReconcilerError:
            continue  # its pass reports why (outside the roots, a bad option)
        layout.add(target.name, given, real)
    return layout


def _dispatch(layout: _Layout, paths: Iterable[str], changed: Callable[[str], None]) -> bool:
    woken: set[str] = set()
    relocate = False
    for path in paths:
        names, swapped = layout.targets_of(path)
        woken |= names
        relocate = relocate or swapped
    for name in sorted(woken):
        changed(name)
    return relocate


def _folders_appeared(layout: _Layout, watched: list[str]) -> bool:
    """A folder that did not exist when the watch began exists now: watch it too."""
    return any(os.path.isdir(f) for f in layout.folders.difference(watched))
