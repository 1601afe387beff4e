"""The interfaces of what keeps the daemon's state: history and its journal, approvals, the circuit breaker,
the safety window, rollouts, leases and locks, pruning. The store implements them; the engine and the runtime
talk through them (re-exported by reconciler.ports)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol

from reconciler.domain.approval import Approval
from reconciler.domain.audit import PruneStats
from reconciler.domain.breaker import Breaker
from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord, RunRecord
from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.plan import Action, ActionState
from reconciler.domain.rollout import Hold, TargetProgress
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.window import Reservation, Spend


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
