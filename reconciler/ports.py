"""The small interfaces the engine talks through; adapters and stores implement them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from reconciler.domain.approval import Approval
from reconciler.domain.audit import PruneStats
from reconciler.domain.breaker import Breaker
from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord, RunRecord
from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import KeyPath
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.rollout import Hold, TargetProgress
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.window import Reservation, Spend


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do, so the engine needs no special cases."""

    read: bool = True
    write: bool = False
    stage: bool = False  # validates a change before committing it
    compare_and_swap: bool = False
    watch: bool = False
    strings_only: bool = False  # every live value is a string
    # Puts a secret value back from the live system's own history of values, found by the keyed hash that
    # reconciler's journal keeps (reconciler never keeps the value): what rolling back a secret needs.
    secret_history: bool = False
    # Reads and writes stay on this host (files, this host's processes): a pass of such a target is mostly CPU
    # work, with no network wait to overlap, and the daemon's workers work such targets one batch at a time
    # (workers.py, the lane).
    local: bool = False


@runtime_checkable
class DiscoveryAdapter(Protocol):
    """Reads a target's live configuration and renders desired values into the source's value domain."""

    capabilities: Capabilities

    def discover(self, target: Target) -> Observed: ...

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]: ...


@runtime_checkable
class BulkReader(Protocol):
    """A discovery adapter that can fingerprint many targets' live state in one go (one etcd transaction, one
    pass over the files), so that a run over many targets reads in full only those that changed."""

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        """Each target's fingerprint (`targets` by name), equal to what `discover(target).fingerprint` gives
        for the same live state. A target this cannot read is left out (its own pass then reads it, and
        reports why not); an error that stops the whole read is raised as a ReconcilerError."""
        ...


@runtime_checkable
class ReadsAhead(Protocol):
    """An adapter that reads a batch's targets ahead of their passes, all in one go: the daemon's wrapper of a
    local adapter (runtime/retry.py), whose reads each cost a hand-off to a read thread and back, which for a
    file on this host cost more than the read. Within the context, this thread's `discover` of one of `targets`
    (that very Target object: not one reloaded since) takes what was read ahead, once; any other read is made
    as usual, and so is every read after a write through the adapter. Reads it could not make are left to the
    passes; one that hung fails its target's pass at once while it still hangs."""

    def reading_ahead(self, targets: Mapping[str, Target]) -> AbstractContextManager[None]: ...


@runtime_checkable
class ParsesAhead(Protocol):
    """An adapter whose reads leave their parse to the pass (Observed.pending), and that can have the reads of a
    batch made ahead parsed elsewhere meanwhile: the file adapter, by a worker process (adapters/parsing.py).
    A read whose document cannot be had from there is parsed by its pass, as any other."""

    def parse_ahead(self, reads: Sequence[Observed]) -> None: ...


@runtime_checkable
class Watcher(Protocol):
    """An adapter that can tell when a target's live configuration changes (capabilities.watch)."""

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """Block until `stop` is set, calling `changed(target name)` for every live change of one of `targets`
        (spurious calls are harmless: they cost one pass). Call `ready()` once the watch is established, that
        is from the moment no change is missed any more: the caller then looks at every target once, for
        what changed before. Return when `stop` is set; raise a ReconcilerError when the watch breaks, so
        that the caller re-establishes it with backoff."""
        ...


@runtime_checkable
class SourceChecker(Protocol):
    """An adapter that can check a target's `spec.source` without touching the live system: what
    `reconciler validate` runs, so that it accepts nothing a pass would refuse for its options."""

    def check(self, target: Target) -> None:
        """Raise the ConfigurationError that a read would raise for the target's options (unknown, missing or
        wrongly typed ones, credential names that are not configured); never connect, read or write."""
        ...


class ChangeResult(StrEnum):
    """What staging found for one change."""

    WRITE = "write"  # live holds `before`: will be written
    NOOP = "noop"  # live already holds `after`
    CONFLICT = "conflict"  # live holds neither


class Change(NamedTuple):
    """Set `path` from `before` to `after` (MISSING: delete).

    A NamedTuple, like DriftItem: as immutable as a frozen dataclass and built several times faster, which
    counts when a pass stages one per drifted key (100,000 in the largest benchmarked)."""

    path: KeyPath
    before: Any
    after: Any


@dataclass
class Staged:
    """A staged set of changes for one target, ready to commit or discard."""

    target: str
    results: list[ChangeResult]
    messages: list[str]
    dry_run: bool
    handle: Any = None  # the adapter's own state between stage and commit

    @property
    def writes(self) -> bool:
        return ChangeResult.WRITE in self.results


@runtime_checkable
class Applier(Protocol):
    """Writes changes to a target's source: staged and validated first, then committed;
    each change is compare-and-swap against its `before`."""

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged: ...

    def commit(self, staged: Staged) -> None: ...

    def discard(self, staged: Staged) -> None: ...


class Journal(Protocol):
    """Records actions before anything changes, and every state they pass through."""

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None: ...

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None: ...


class HistoryStore(Journal, Protocol):
    """Keeps every desired version, run, pass, drift and action; bulk writes, no per-key round trips."""

    def ping(self) -> None: ...

    def ensure_version(self, version: DesiredVersion, root: str) -> None: ...

    def start_run(
        self,
        kind: RunKind,
        trigger: str,
        desired_version: str | None,
        rollback_of: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
        at: datetime | None = None,
    ) -> str: ...

    def unfinished_runs(self) -> list[tuple[str, str | None]]: ...

    def settle_in_flight(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        """update_actions() of those of `ids` still in flight: recovery's, so that two recoveries of one run
        (a daemon's and a command's) cannot settle an action twice, the second from a read made before the
        first settled it and a pass wrote the target."""
        ...

    def writes_in_flight(self, target: str, excluding_run: str) -> list[tuple[str, str | None]]:
        """(run id, owner) of each unfinished run but `excluding_run` with an action on `target` still in
        flight (domain.plan.IN_FLIGHT)."""
        ...

    def recent_writes(self, target: str, pointers: Sequence[str], since: datetime) -> dict[str, list[datetime]]: ...

    def written_targets(self, targets: Collection[str], since: datetime) -> set[str]:
        """Those of `targets` with any write since `since` that `recent_writes` would count, whatever its path:
        for a batch of passes, so that a target with none need not ask for its own."""

    def finish_run(
        self, run_id: str, status: RunStatus, error: str | None = None, at: datetime | None = None
    ) -> None: ...

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None: ...

    def runs(self, limit: int = 20) -> list[RunRecord]: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def passes(self, run_id: str) -> list[PassRecord]: ...

    def actions(
        self, run_id: str | None = None, states: Sequence[ActionState] = (), action_id: str | None = None
    ) -> list[Action]: ...


class ApprovalStore(Protocol):
    """Keeps one approval per escalated drift, and what people decided about it."""

    def sync(
        self, target: str, environment: str, escalations: Sequence[Classified], run_id: str | None, now: datetime
    ) -> tuple[dict[str, Approval], list[Approval]]: ...

    def mark_used(self, used: Sequence[tuple[str, str]]) -> None: ...

    def open_targets(self, targets: Collection[str]) -> set[str]: ...


class BreakerStore(Protocol):
    """Keeps the circuit breaker's state where every writing process sees it."""

    def get(self) -> Breaker: ...

    def set(self, breaker: Breaker, now: datetime) -> None: ...

    def write_outcomes(self, since: datetime) -> tuple[int, int]: ...


class Adapter(DiscoveryAdapter, Applier, Protocol):
    """Reads and writes one kind of live system: what the executor drives."""


class AdapterFactory(Protocol):
    """Builds an adapter from the settings; every adapter class found by entry point is one."""

    known_options: tuple[str, ...]  # the `spec.source` options it takes, for validation

    def from_settings(self, settings: Any) -> DiscoveryAdapter: ...


AdapterLookup = Callable[[str], Adapter]  # an adapter by its name (built once, with retries, by the daemon)


class SafetyWindow(Protocol):
    """Keeps the writes of a rolling window where every replica sees them, and refuses past the limits."""

    def reserve(self, entry: Reservation, since: datetime, check: Callable[[Spend], str | None]) -> str | None: ...


class RolloutStore(Protocol):
    """Keeps where each target is in the rollout of the desired version in force, and the version's hold."""

    def begin(self, version: str, now: datetime) -> bool: ...

    def completed(self, version: str) -> bool: ...

    def complete(self, version: str, now: datetime) -> None: ...

    def progress(self, version: str) -> list[TargetProgress]: ...

    def mark(self, version: str, progress: Sequence[TargetProgress]) -> None: ...

    def hold(self, version: str) -> Hold | None: ...

    def set_hold(self, hold: Hold) -> bool: ...

    def release(
        self, version: str, targets: Sequence[tuple[str, int]], actor: str, reason: str, now: datetime
    ) -> int: ...


class ApprovalDecisions(Protocol):
    """What people decide about escalations (the API and the CLI record it; the next pass acts on it)."""

    def decide(
        self, approval_id: str, *, approve: bool, actor: str, comment: str | None, now: datetime, ttl: timedelta
    ) -> Approval: ...


class LeaseStore(Protocol):
    """Shares the targets among replicas: heartbeats, leases, and one pass per target at a time."""

    @property
    def shared(self) -> bool: ...

    def heartbeat(self, owner: str, now: datetime, ttl: timedelta, *, joining: bool = False) -> int: ...

    def joining(self, owner: str, now: datetime, ttl: timedelta) -> int: ...

    def next_lapse(self, owner: str, now: datetime, ttl: timedelta) -> datetime | None: ...

    def claim(
        self, owner: str, targets: Collection[str], now: datetime, ttl: timedelta, replicas: int, joining: int = 0
    ) -> set[str]: ...

    def housekeeper(self, owner: str, now: datetime, ttl: timedelta) -> bool: ...

    def dead_replicas(self, now: datetime, ttl: timedelta) -> list[str]: ...

    def departed(self, owner: str, now: datetime, ttl: timedelta) -> list[str]: ...  # alive, session gone: leases.py

    def replica(self, owner: str) -> bool:
        """Whether `owner` is a replica the lease table knows: heartbeating, or dead and not yet forgotten."""

    def forget_replica(self, owner: str) -> None: ...

    def exclusive(self, target: str) -> AbstractContextManager[bool]: ...
    def exclusive_all(
        self, targets: Sequence[str]
    ) -> AbstractContextManager[tuple[set[str], Callable[[str], None]]]: ...


class ProcessLock(Protocol):
    """Held while a daemon runs, where its database serves only one (SQLite)."""

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class HistoryPruner(Protocol):
    """Deletes history older than a cutoff in small batches, keeping whatever is still needed."""

    def prune(
        self,
        cutoff: datetime,
        *,
        active_exceptions: Collection[str] = (),
        batch_rows: int = 5000,
        pause_s: float = 0.0,
        dry_run: bool = False,
        stop: threading.Event | None = None,
    ) -> PruneStats: ...


class Clock(Protocol):
    """Tells the time, so that expiry can be tested."""

    def now(self) -> datetime: ...


@runtime_checkable
class TargetCache(Protocol):
    """An adapter that keeps something of each target between passes (the file adapter: where its file is, and
    the file's last hash), and drops it for targets this process no longer passes."""

    def forget(self, names: Collection[str]) -> None: ...


@runtime_checkable
class StagedSweeper(Protocol):
    """An applier whose interrupted commits can leave staged copies beside live configuration (the file
    adapter's temporary files), and that can find and remove them again; recovery calls it."""

    def sweep_staged(self, target: Target) -> list[str]:
        """Remove what interrupted commits of this adapter left for `target`, and nothing else; return what
        was removed. Leaves alone what a commit still in progress (in another process) may need."""
        ...


__all__ = [
    "Adapter",
    "AdapterFactory",
    "AdapterLookup",
    "Applier",
    "ApprovalDecisions",
    "ApprovalStore",
    "BreakerStore",
    "BulkReader",
    "Capabilities",
    "Change",
    "ChangeResult",
    "Clock",
    "DesiredVersion",
    "DiscoveryAdapter",
    "HistoryPruner",
    "HistoryStore",
    "Journal",
    "LeaseStore",
    "ProcessLock",
    "RolloutStore",
    "SafetyWindow",
    "SourceChecker",
    "Staged",
    "StagedSweeper",
    "TargetCache",
    "Watcher",
]
