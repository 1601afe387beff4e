"""The daemon's history while the store is unreachable: passes that write nothing live are kept in memory, in
order, and written when the store answers again; past a bound, new passes' history is dropped, counted and
logged, and never half of a run.

What a pass found goes through here (its run, its drift, the actions a dry-run would have taken), and what a
write leaves behind (its actions' states). What a write needs on disk before it happens never does: see
WriteAhead. The gate holds every write while anything is kept here (engine/gate.py: Hold.STORE).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reconciler.domain.clock import SystemClock
from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord
from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.run import RunKind, RunStatus
from reconciler.errors import StoreUnavailable
from reconciler.observe import logging as logs
from reconciler.observe.metrics import Metrics
from reconciler.ports import Clock, HistoryStore, Journal

log = logs.get_logger("reconciler.backlog")


class Recorder(Journal, Protocol):
    """What a run writes of what it found: the history store itself, or the daemon's Backlog in front of it."""

    def ensure_version(self, version: DesiredVersion, root: str) -> None: ...

    def start_run(
        self, kind: RunKind, trigger: str, desired_version: str | None, *, run_id: str, owner: str | None
    ) -> object: ...

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None: ...

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None: ...


class Writes(Journal, Protocol):
    """What a kept entry writes to: the history store, or a batch of its writes (store/batch.py)."""

    def ensure_version(self, version: DesiredVersion, root: str) -> None: ...

    def start_run(
        self,
        kind: RunKind,
        trigger: str,
        desired_version: str | None,
        *,
        run_id: str,
        owner: str | None,
        at: datetime | None = None,
    ) -> object: ...

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None: ...

    def finish_run(
        self, run_id: str, status: RunStatus, error: str | None = None, at: datetime | None = None
    ) -> None: ...


class Batch(Writes, Protocol):
    """The history store's writes collected, and made in one transaction by `commit` (all or nothing)."""

    def commit(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    run_id: str | None  # None: not part of a run (a desired version)
    write: Callable[[Writes], None]
    rows: int  # drift rows and actions it holds
    is_pass: bool  # counts as a pass (what the bound and the gauge count)
    opens: bool = False  # starts a run


class _Entries:
    """A pass's findings as entries, each handed to `_put`: a Backlog writes or keeps them, Gathered collects.
    Their times (a run's start and end, when actions were journaled) are the clock's when the call is made, not
    when the entry is written: a pass kept while the store was away keeps the time it happened."""

    clock: Clock

    def _put(self, entry: _Entry) -> None:
        raise NotImplementedError

    def ensure_version(self, version: DesiredVersion, root: str) -> None:
        self._put(_Entry(None, lambda s: s.ensure_version(version, root), rows=0, is_pass=False))

    def start_run(
        self, kind: RunKind, trigger: str, desired_version: str | None, *, run_id: str, owner: str | None
    ) -> None:
        at = self.clock.now()

        def write(s: Writes) -> None:
            s.start_run(kind, trigger, desired_version, run_id=run_id, owner=owner, at=at)

        self._put(_Entry(run_id, write, rows=0, is_pass=False, opens=True))

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None:
        kept = tuple(drifts)
        self._put(_Entry(run_id, lambda s: s.record_pass(run_id, record, kept), rows=len(kept), is_pass=True))

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None:
        if not actions:
            return
        kept, when = tuple(actions), at or self.clock.now()
        self._put(_Entry(kept[0].run_id, lambda s: s.record_actions(kept, at=when), rows=len(kept), is_pass=False))

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        """For the Journal protocol; a dry-run pass does not change its actions' states once recorded."""
        kept = tuple(ids)
        self._put(_Entry(None, lambda s: s.update_actions(kept, state, error), rows=0, is_pass=False))

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        at = self.clock.now()
        self._put(_Entry(run_id, lambda s: s.finish_run(run_id, status, error, at=at), rows=0, is_pass=False))


class Gathered(_Entries):
    """The history of passes that write nothing live, collected for `Backlog.write_all` (a daemon's batch)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()  # the engine's (gate.clock); defaults to the real time
        self.entries: list[_Entry] = []

    def _put(self, entry: _Entry) -> None:
        self.entries.append(entry)


class Backlog(_Entries):
    """Writes a pass's findings to the history store, or keeps them while it cannot (see the module doc)."""

    def __init__(
        self,
        store: HistoryStore,
        metrics: Metrics,
        *,
        max_passes: int,
        max_rows: int,
        batch: Callable[[], Batch] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()  # the engine's; defaults to the real time
        self.batch = batch  # a new batch of writes, for write_all; None: the store writes one call at a time
        self.metrics = metrics
        self.max_passes = max_passes
        self.max_rows = max_rows
        self._entries: deque[_Entry] = deque()
        self._passes = 0
        self._rows = 0
        self._dropped_runs: set[str] = set()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._down = False  # the last write or flush found the store unreachable

    @property
    def pending(self) -> int:
        """Passes kept, not yet written."""
        return self._passes

    @property
    def waiting(self) -> bool:
        """Something is kept, not yet written."""
        return bool(self._entries)

    @property
    def healthy(self) -> bool:
        """Nothing kept, and the last write reached the store."""
        return not self._entries and not self._down

    # -- the history store's writes of a pass ----------------------------------------------------------------

    def _put(self, entry: _Entry) -> None:
        with self._lock:
            if entry.run_id in self._dropped_runs:
                return  # its run was dropped: none of it is written, so no run is left half-recorded
            if self._entries:  # the store is away, or being caught up: keep the order
                self._keep(entry, entry.opens)
                return
        try:
            entry.write(self.store)
            self._down = False
        except StoreUnavailable as exc:
            self._kept_all([entry], exc)

    def write_all(self, entries: Sequence[_Entry]) -> None:
        """Write what a batch of passes gathered, in one transaction (see `batch`), or keep all of it."""
        if not entries:
            return
        if self.batch is None:
            for entry in entries:
                self._put(entry)
            return
        with self._lock:
            if self._entries:  # the store is away, or being caught up: keep the order
                for entry in entries:
                    if entry.run_id not in self._dropped_runs:
                        self._keep(entry, entry.opens)
                return
        try:
            batch = self.batch()
            for entry in entries:
                entry.write(batch)
            batch.commit()
            self._down = False
        except StoreUnavailable as exc:
            self._kept_all(entries, exc)

    def _kept_all(self, entries: Sequence[_Entry], exc: StoreUnavailable) -> None:
        with self._lock:
            if not self._down and not self._entries:
                log.error("history store unreachable: passes are kept in memory until it is back", error=str(exc))
            self._down = True
            for entry in entries:
                if entry.run_id not in self._dropped_runs:
                    self._keep(entry, entry.opens)

    def _keep(self, entry: _Entry, opens: bool) -> None:
        """Append `entry` (the lock is held), unless the bound is reached: then a new run, or a pass of one,
        is dropped; the closing of a run already kept is always kept."""
        full = self._passes >= self.max_passes or self._rows + entry.rows > self.max_rows
        if full and (opens or entry.rows or entry.is_pass):
            if entry.run_id is not None and opens:
                self._dropped_runs.add(entry.run_id)
            if entry.is_pass or opens:
                self.metrics.history_dropped.inc()
                log.error(
                    "history backlog full: a pass's history is dropped",
                    passes=self._passes,
                    rows=self._rows,
                    max_passes=self.max_passes,
                    max_rows=self.max_rows,
                )
            return
        self._entries.append(entry)
        self._passes += entry.is_pass
        self._rows += entry.rows
        self.metrics.history_backlog.set(self._passes)

    # -- catching up -----------------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write what is kept, oldest first, while the store takes it; whether nothing is left. One caller at a
        time; the others return at once. An entry the store refuses while it answers pings is dropped
        (logged): it would otherwise hold back everything after it."""
        if not self._entries:
            return True
        if not self._flushing.acquire(blocking=False):
            return False
        written = 0
        try:
            while self._entries:
                entry = self._entries[0]
                try:
                    entry.write(self.store)
                except StoreUnavailable as exc:
                    if not self._answers():
                        self._down = True
                        return False
                    log.error("a kept history entry was refused by the store and dropped", error=str(exc))
                    self.metrics.history_dropped.inc(entry.is_pass)
                self._pop()
                written += 1
            self._down = False
            log.warning("history store back: kept passes written", entries=written)
            return True
        finally:
            self._flushing.release()

    def _pop(self) -> None:
        with self._lock:
            entry = self._entries.popleft()
            self._passes -= entry.is_pass
            self._rows -= entry.rows
            self.metrics.history_backlog.set(self._passes)

    def _answers(self) -> bool:
        try:
            self.store.ping()
        except StoreUnavailable:
            return False
        return True


class WriteAhead:
    """The recorder of a run that may write live, in the daemon: what must be on disk before a write (the run,
    the actions about to be written, a rollback's reverse actions) goes to the store, or the pass fails and
    writes nothing; what comes after a write (the actions' states, the pass, the end of the run) goes through
    the backlog, so that a store lost mid-pass loses none of it. Until the backlog is written the gate holds
    every write; a crash meanwhile leaves in-flight actions that recovery settles, as after any crash."""

    def __init__(self, store: HistoryStore, backlog: Backlog) -> None:
        self.store = store
        self.backlog = backlog

    def ensure_version(self, version: DesiredVersion, root: str) -> None:
        self.store.ensure_version(version, root)

    def start_run(
        self, kind: RunKind, trigger: str, desired_version: str | None, *, run_id: str, owner: str | None
    ) -> object:
        return self.store.start_run(kind, trigger, desired_version, run_id=run_id, owner=owner)

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None:
        self.store.record_actions(actions, at)

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        self.backlog.update_actions(ids, state, error)

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None:
        self.backlog.record_pass(run_id, record, drifts)

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        self.backlog.finish_run(run_id, status, error)
