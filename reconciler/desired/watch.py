"""Watching the desired-state folder: one inotify watcher (through watchfiles) over its tree tells the desired
source when the folder may have changed, so that the daemon's look every `desired_poll_s` walks and stats its
thousands of manifest files only after an event, rather than every time (one replica of three spent a fifth
of its steady-state CPU on that walk at 300,000 targets in 3,001 files, docs/benchmarks.md).

Events are a hint, never the truth: the walk still decides what changed. The folder is walked anyway every
`FULL_LOOK_S`, and on every look until the watcher is established, while it is down, and when the root
resolves to another folder than the one watched (a git-sync style symlink swap); events lost to an inotify
queue overflow, or never sent (NFS: remote edits raise no inotify event), are caught by those walks. Events
under `.git` are ignored: a fetch writes there without changing a manifest.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import watchfiles

from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.desired.watch")

FULL_LOOK_S = 60.0  # the folder is walked at least this often, whatever the watcher says
RETRY_S = 5.0  # after the watcher failed, before it is established again
DEBOUNCE_MS = 50
TIMEOUT_MS = 500  # how often the watcher looks at `stop` when nothing happens


class FolderWatch:
    """Whether the desired-state folder may have changed since the source last looked at it."""

    def __init__(self, root: Path, stop: threading.Event, full_look_s: float = FULL_LOOK_S) -> None:
        self.root = root
        self.stop = stop
        self.full_look_s = full_look_s
        self._lock = threading.Lock()
        self._changed = True  # until a look after the watcher is established
        self._watching: str | None = None  # the folder the established watcher covers
        self._looked_at = 0.0  # monotonic time of the last look
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.root.is_dir():  # a single manifest file is cheap to stat: not watched
            self._thread = threading.Thread(target=self._run, name="desired-watch", daemon=True)
            self._thread.start()

    def quiet(self) -> bool:
        """Whether the last look still stands: the watcher is established on the folder the root resolves to,
        has seen no event since that look, and a full look is not due."""
        with self._lock:
            if self._changed or self._watching is None:
                return False
            if time.monotonic() - self._looked_at >= self.full_look_s:
                return False
            watching = self._watching
        return os.path.realpath(self.root) == watching

    def looking(self) -> None:
        """The source is about to look at the folder: events from now on make the next look worth it too."""
        with self._lock:
            self._changed = False
            self._looked_at = time.monotonic()

    def _mark(self, watching: str | None) -> None:
        with self._lock:
            self._changed = True
            self._watching = watching

    def _run(self) -> None:
        while not self.stop.is_set():
            folder = os.path.realpath(self.root)
            try:
                self._watch(folder)
            except (OSError, RuntimeError) as exc:  # inotify limits, the folder gone
                log.warning("desired folder watch failed; walking it every look meanwhile", error=str(exc))
                self._mark(None)
                self.stop.wait(RETRY_S)
                continue
            self._mark(None)  # ended by itself (the folder went away, or the root moved): established again
            self.stop.wait(min(RETRY_S, 1.0))

    def _watch(self, folder: str) -> None:
        git = os.path.join(folder, ".git")
        batches = watchfiles.watch(
            folder,
            stop_event=self.stop,
            recursive=True,
            debounce=DEBOUNCE_MS,
            rust_timeout=TIMEOUT_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            ignore_permission_denied=True,
            watch_filter=None,
        )
        established = False
        for batch in batches:
            if not established:  # the first batch (or timeout) comes once the watch is in place
                established = True
                self._mark(folder)  # what changed before it was in place is seen by the next look's walk
                continue
            if any(path != git and not path.startswith(git + os.sep) for _, path in batch):
                self._mark(folder)
            if os.path.realpath(self.root) != folder:
                return
