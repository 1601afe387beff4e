"""Fakes for people who write adapters or embed the engine: an in-memory adapter and an in-memory history store.

Both keep the promises of the real ones (reconciler.ports): the adapter stages every change as a
compare-and-swap against its `before`, and the store keeps runs, passes, drift and the action journal. A test
can run real passes with them, without files or a database:

    adapter = FakeAdapter({"payments": {"log_level": "DEBUG"}})
    engine = assemble(lambda: state, MemoryHistory(), lambda name: adapter, Metrics(), SystemClock(),
                      hmac_key=b"k", guard=Guard(Mode.APPLY, ["*"]))
    engine.reconcile()
    assert adapter.documents["payments"] == {"log_level": "INFO"}
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from reconciler.adapters.common import apply_changes
from reconciler.domain import fingerprint
from reconciler.domain.drift import Classified
from reconciler.domain.history import PassRecord, RunRecord
from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.observed import Observed
from reconciler.domain.plan import IN_FLIGHT, Action, ActionState, committed
from reconciler.domain.run import RunKind, RunStatus
from reconciler.domain.values import canonical_json
from reconciler.errors import ConflictError, DiscoveryError
from reconciler.ports import Capabilities, Change, Staged

__all__ = ["FakeAdapter", "MemoryHistory"]


@dataclass(frozen=True)
class _Pending:
    target: str
    document: dict[str, Any]
    base: str  # the fingerprint the changes were staged against: commit refuses if live moved since


class FakeAdapter:
    """Live documents in memory, by target name. Reads, writes (staged, compare-and-swap) and bulk reads like a
    real adapter; `writes` counts commits per target, and `fail_reads` names targets whose reads fail."""

    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True)
    known_options: tuple[str, ...] = ()

    def __init__(self, documents: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.documents: dict[str, dict[str, Any]] = {k: copy.deepcopy(v) for k, v in (documents or {}).items()}
        self.writes: dict[str, int] = {}
        self.fail_reads: set[str] = set()
        self._lock = threading.Lock()

    def _fingerprint(self, name: str) -> str:
        return fingerprint.of_bytes(canonical_json(self.documents[name]).encode())

    def discover(self, target: Target) -> Observed:
        with self._lock:
            if target.name in self.fail_reads or target.name not in self.documents:
                raise DiscoveryError(f"fake:{target.name}: cannot be read")
            document = copy.deepcopy(self.documents[target.name])
            return Observed(self._fingerprint(target.name), f"fake:{target.name}", document=document)

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        with self._lock:
            return {n: self._fingerprint(n) for n in targets if n in self.documents and n not in self.fail_reads}

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return desired

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        observed = self.discover(target)
        updated, results, messages = apply_changes(
            observed.document, changes, target.list_keys(), dry_run=dry_run, where=observed.location
        )
        return Staged(target.name, results, messages, dry_run, _Pending(target.name, updated, observed.fingerprint))

    def commit(self, staged: Staged) -> None:
        pending: _Pending = staged.handle
        with self._lock:
            if self._fingerprint(pending.target) != pending.base:
                raise ConflictError(f"fake:{pending.target}: changed by another writer while the change was staged")
            self.documents[pending.target] = pending.document
            self.writes[pending.target] = self.writes.get(pending.target, 0) + 1

    def discard(self, staged: Staged) -> None:
        return None


class MemoryHistory:
    """A HistoryStore in memory: runs, passes, drift and the action journal, for tests of engines and adapters."""

    def __init__(self) -> None:
        self.versions: dict[str, DesiredVersion] = {}
        self.run_rows: dict[str, dict[str, Any]] = {}
        self.pass_rows: list[tuple[str, PassRecord, tuple[Classified, ...]]] = []
        self.action_rows: dict[str, Action] = {}
        self.updated_at: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def ping(self) -> None:
        return None

    def ensure_version(self, version: DesiredVersion, root: str) -> None:
        self.versions.setdefault(version.digest, version)

    def start_run(
        self,
        kind: RunKind,
        trigger: str,
        desired_version: str | None,
        rollback_of: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
        at: datetime | None = None,
    ) -> str:
        run_id = run_id or str(uuid.uuid4())
        with self._lock:
            self.run_rows[run_id] = {
                "kind": kind,
                "trigger": trigger,
                "status": RunStatus.RUNNING,
                "started_at": at or datetime.now(UTC),
                "finished_at": None,
                "desired_version": desired_version,
                "rollback_of": rollback_of,
                "error": None,
                "owner": owner,
            }
        return run_id

    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None, at: datetime | None = None) -> None:
        with self._lock:
            self.run_rows[run_id].update(status=status, error=error, finished_at=at or datetime.now(UTC))

    def unfinished_runs(self) -> list[tuple[str, str | None]]:
        return [(i, r["owner"]) for i, r in self.run_rows.items() if r["status"] is RunStatus.RUNNING]

    def writes_in_flight(self, target: str, excluding_run: str) -> list[tuple[str, str | None]]:
        runs = {a.run_id for a in self.action_rows.values() if a.target == target and a.state in IN_FLIGHT}
        return [(i, o) for i, o in self.unfinished_runs() if i in runs and i != excluding_run]

    def record_pass(self, run_id: str, record: PassRecord, drifts: Sequence[Classified]) -> None:
        with self._lock:
            self.pass_rows.append((run_id, record, tuple(drifts)))

    def record_actions(self, actions: Sequence[Action], at: datetime | None = None) -> None:
        now = at or datetime.now(UTC)
        with self._lock:
            for action in actions:
                self.action_rows[action.id] = action
                self.updated_at[action.id] = now

    def update_actions(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        now = datetime.now(UTC)
        with self._lock:
            for i in ids:
                self.action_rows[i] = self.action_rows[i].with_state(state, error)
                self.updated_at[i] = now

    def settle_in_flight(self, ids: Sequence[str], state: ActionState, error: str | None = None) -> None:
        with self._lock:
            still = [i for i in ids if self.action_rows[i].state in IN_FLIGHT]
        self.update_actions(still, state, error)

    def recent_writes(self, target: str, pointers: Sequence[str], since: datetime) -> dict[str, list[datetime]]:
        wanted = set(pointers)
        found: dict[str, list[datetime]] = {}
        for i, a in self.action_rows.items():
            when = self.updated_at[i]
            if a.target == target and a.pointer in wanted and a.rollback_of is None and committed(a) and when >= since:
                found.setdefault(a.pointer, []).append(when)
        return found

    def written_targets(self, targets: Collection[str], since: datetime) -> set[str]:
        wanted = set(targets)
        return {
            a.target
            for i, a in self.action_rows.items()
            if a.target in wanted and a.rollback_of is None and committed(a) and self.updated_at[i] >= since
        }

    def runs(self, limit: int = 20) -> list[RunRecord]:
        ordered = sorted(self.run_rows, key=lambda i: self.run_rows[i]["started_at"], reverse=True)
        return [self._record(i) for i in ordered[:limit]]

    def run(self, run_id: str) -> RunRecord | None:
        return self._record(run_id) if run_id in self.run_rows else None

    def passes(self, run_id: str) -> list[PassRecord]:
        return [record for r, record, _ in self.pass_rows if r == run_id]

    def actions(
        self, run_id: str | None = None, states: Sequence[ActionState] = (), action_id: str | None = None
    ) -> list[Action]:
        return [
            a
            for a in self.action_rows.values()
            if (run_id is None or a.run_id == run_id)
            and (not states or a.state in states)
            and (action_id is None or a.id == action_id)
        ]

    def _record(self, run_id: str) -> RunRecord:
        row = self.run_rows[run_id]
        passes = [(record, drifts) for r, record, drifts in self.pass_rows if r == run_id]
        counts: dict[str, int] = {}
        for action in self.actions(run_id):
            counts[action.state.value] = counts.get(action.state.value, 0) + 1
        fields = {k: v for k, v in row.items() if k != "owner"}
        record = RunRecord(run_id, **fields)
        return replace(record, drift_count=sum(len(d) for _, d in passes), action_counts=counts, targets=len(passes))
