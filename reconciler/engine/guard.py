"""Guards on apply: the environments where it may write at all, and a runtime switch to dry-run.

The switch is a flag file (present: dry-run) or a signal (SIGUSR1: dry-run, SIGUSR2: back to the configured
mode). Every change of the effective mode is logged once.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Sequence
from pathlib import Path

from reconciler.domain.run import Mode
from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.guard")


class Guard:
    """Decides the mode a pass may run in."""

    def __init__(self, configured: Mode, apply_environments: Sequence[str], dry_run_file: Path | None = None) -> None:
        self.configured = configured
        self.apply_environments = tuple(apply_environments)
        self.dry_run_file = dry_run_file
        self._forced = False  # by signal
        self._last: tuple[Mode, str] | None = None
        self._lock = threading.Lock()

    def force_dry_run(self, forced: bool) -> None:
        with self._lock:
            self._forced = forced
        self.mode()

    def switched(self) -> str | None:
        """Why the dry-run switch is on (a signal, the flag file), or None: it holds even a one-shot apply."""
        if self._forced:
            return "switched to dry-run by signal (SIGUSR2 switches back)"
        if self.dry_run_file is not None and self.dry_run_file.exists():
            return f"switched to dry-run: flag file {self.dry_run_file} exists"
        return None

    def mode(self) -> Mode:
        """The global mode now: the configured one unless a signal or the flag file says dry-run."""
        return self.now()[0]

    def now(self) -> tuple[Mode, str | None]:
        """The global mode now, and why the dry-run switch holds it (None when it does not); every change is
        logged once."""
        switched = self.switched()
        mode, why = (Mode.DRY_RUN, switched) if switched else (self.configured, "configured")
        with self._lock:
            if self._last is not None and self._last != (mode, why):
                log.warning("mode switched", mode=mode.value, reason=why, previous=self._last[0].value)
            self._last = (mode, why)
        return mode, switched

    def allows_apply(self, environment: str) -> bool:
        return any(fnmatch.fnmatchcase(environment, p) for p in self.apply_environments)
