"""The daemon's view of the desired state: the last good version, reloaded when the files change; a reload
reads only the files that changed (desired/files.py). In the daemon, a watcher over the folder
(desired/watch.py) spares the walk of every file while nothing happened there."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from reconciler.desired import files, loader
from reconciler.desired.watch import FolderWatch
from reconciler.domain import filestat
from reconciler.domain.pacing import Pause
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError

Signature = frozenset[tuple[str, filestat.Identity]]


class DesiredSource:
    """Loads a desired-state folder and keeps its last good version; an invalid edit is refused and
    remembered in `last_error`, while the last good version stays in force."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._state: DesiredState | None = None
        self._signature: Signature | None = None
        self._files = files.FileCache()
        self.last_error: ConfigurationError | None = None
        self._watch: FolderWatch | None = None

    def watch(self, stop: threading.Event) -> None:
        """Watch the folder until `stop`: from then on, a look at it walks its files only after an event there
        (and at least every desired/watch.py FULL_LOOK_S)."""
        if self._watch is None:
            self._watch = FolderWatch(self.root, stop)
            self._watch.start()

    def _signature_now(self) -> Signature:
        if self.root.is_file():
            try:
                return frozenset({(str(self.root), filestat.identity(os.stat(self.root)))})
            except OSError:  # removed meanwhile
                return frozenset()
        entries = []
        for entry in loader.manifest_entries(self.root, ordered=False):
            try:
                st = entry.stat()
            except OSError:
                continue
            entries.append((entry.path, filestat.identity(st)))
        return frozenset(entries)  # compared, never walked in order: no sort of thousands of paths every poll

    @property
    def loaded(self) -> bool:
        return self._state is not None

    def loaded_state(self) -> DesiredState:
        """The version in force, without looking at the files: what the daemon's passes use, so that a pass
        costs no directory walk; the daemon's refresh job calls current() to pick up edits."""
        state = self._state
        return state if state is not None else self.current()

    def current(self, pause: Pause | None = None) -> DesiredState:
        """The desired state in force; reloads when files changed. Raises only if none was ever valid. `pause`:
        called every so often by a reload's long loops (domain/pacing.py)."""
        with self._lock:
            watch = self._watch
            if self._state is not None and watch is not None and watch.quiet():
                return self._state
            if watch is not None:
                watch.looking()  # before the walk: an edit made during it is looked at again next time
            signature = self._signature_now() if self.root.exists() else frozenset()
            if self._state is not None and signature == self._signature and not self._files.changed_in_place():
                return self._state
            try:
                state = loader.load(self.root, previous=self._state, cache=self._files, pause=pause)
            except ConfigurationError as exc:
                self._signature = signature  # do not re-parse the same bad files every pass
                self.last_error = exc
                if self._state is None:
                    raise
                return self._state
            self._state, self._signature, self.last_error = state, signature, None
            return state
