"""The small interfaces the engine talks through; adapters and stores implement them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import KeyPath
from reconciler.ports.stores import (
    ApprovalDecisions,
    ApprovalStore,
    BreakerStore,
    HistoryPruner,
    HistoryStore,
    Journal,
    LeaseStore,
    ProcessLock,
    RolloutStore,
    SafetyWindow,
)


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


class Adapter(DiscoveryAdapter, Applier, Protocol):
    """Reads and writes one kind of live system: what the executor drives."""


class AdapterFactory(Protocol):
    """Builds an adapter from the settings; every adapter class found by entry point is one."""

    known_options: tuple[str, ...]  # the `spec.source` options it takes, for validation

    def from_settings(self, settings: Any) -> DiscoveryAdapter: ...


AdapterLookup = Callable[[str], Adapter]  # an adapter by its name (built once, with retries, by the daemon)


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
