"""Actions: one planned change of one path, and its journal states."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, NamedTuple

from reconciler.domain.manifest import DriftOp
from reconciler.domain.paths import MISSING, KeyPath, to_pointer
from reconciler.domain.values import Redacted, canonical_json


class ActionState(StrEnum):
    """Where an action is in the journal.

    planned → staged → applied → verified, or failed / conflict / rolled_back on the way;
    noop: live already held `after`, nothing written; dry_run: would have been written;
    interrupted: the run died before writing it (found by recovery), nothing written.
    """

    PLANNED = "planned"
    STAGED = "staged"
    APPLIED = "applied"
    VERIFIED = "verified"
    NOOP = "noop"
    CONFLICT = "conflict"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    DRY_RUN = "dry_run"
    INTERRUPTED = "interrupted"

    @property
    def wrote(self) -> bool:
        """Whether live holds (or held) what this action wrote."""
        return self in (ActionState.APPLIED, ActionState.VERIFIED)


# An action in these states was journaled ahead of a write that has not ended: while its run is alive, the
# write may be under way; once its process is gone, recovery settles it against live state.
IN_FLIGHT = (ActionState.PLANNED, ActionState.STAGED, ActionState.APPLIED)


class _ActionFields(NamedTuple):
    id: str
    run_id: str
    target: str
    path: KeyPath
    op: DriftOp
    before: Any
    after: Any
    desired_version: str
    reason: str
    secret: bool = False
    rollback_of: str | None = None
    state: ActionState = ActionState.PLANNED
    error: str | None = None
    idempotency_key: str = ""
    # `path` as a JSON Pointer, rendered once: the key, the journal and messages use it.
    pointer: str = ""


_STATE = _ActionFields._fields.index("state")  # `error` follows it


class Action(_ActionFields):
    """Set `path` of `target` from `before` to `after` (MISSING after: delete), guarded by `before`.

    Built from its fields; `pointer` and `idempotency_key` are computed when not given. A NamedTuple rather
    than a frozen dataclass, like DriftItem: as immutable, and built several times faster. A pass with
    100,000 drifted keys builds 200,000 (planned, then in the state staging found), and a frozen dataclass
    sets each of its 15 fields through object.__setattr__: that was the largest part of planning. Change
    fields with `_replace` (as with dataclasses.replace, a given key and pointer are kept: pass
    `idempotency_key=""` to have the key computed again)."""

    __slots__ = ()

    def __new__(
        cls,
        id: str,
        run_id: str,
        target: str,
        path: KeyPath,
        op: DriftOp,
        before: Any,
        after: Any,
        desired_version: str,
        reason: str,
        secret: bool = False,
        rollback_of: str | None = None,
        state: ActionState = ActionState.PLANNED,
        error: str | None = None,
        idempotency_key: str = "",
        pointer: str = "",
    ) -> Action:
        if not pointer:
            pointer = to_pointer(path)
        if not idempotency_key:
            idempotency_key = _key(target, pointer, before, after, desired_version)
        fields = (id, run_id, target, path, op, before, after, desired_version, reason, secret, rollback_of)
        return tuple.__new__(cls, (*fields, state, error, idempotency_key, pointer))

    def _replace(self, **changes: Any) -> Action:
        """A copy with `changes`, built by __new__ (the tuple's own _replace would skip it)."""
        return Action(**{**self._asdict(), **changes})

    @property
    def verb(self) -> str:
        if self.after is MISSING:
            return "delete"
        return "add" if self.before is MISSING else "set"

    def with_state(self, state: ActionState, error: str | None = None) -> Action:
        """The same action in another state: every field but `state` and `error` kept, key and pointer as they
        are (one call per action and state change: 100,000 in a pass with that many drifted keys)."""
        return tuple.__new__(Action, (*self[:_STATE], state, error, *self[_STATE + 2 :]))

    def journal_before(self, key: bytes) -> Any:
        """`before` as the journal may keep it: secrets become a keyed hash."""
        return _journal_value(self.before, self.secret, key)

    def journal_after(self, key: bytes) -> Any:
        """`after` as the journal may keep it: secrets become a keyed hash."""
        return _journal_value(self.after, self.secret, key)


def _journal_value(value: Any, secret: bool, key: bytes) -> Any:
    if not secret or value is MISSING or isinstance(value, Redacted):
        return value
    return Redacted.of(value, key)


# Errors of an action that failed after its write reached live (verification or a health gate found live
# other than written): live was changed, so it is rolled back, and it counts as a write.
FAILED_AFTER_WRITE = ("verify", "health gate")
# Forward writes that reached live, or found the value already there: what a fight with another writer counts.
COMMITTED = (ActionState.APPLIED, ActionState.VERIFIED, ActionState.ROLLED_BACK, ActionState.NOOP)


def failed_after_write(action: Action) -> bool:
    return action.state is ActionState.FAILED and (action.error or "").startswith(FAILED_AFTER_WRITE)


def committed(action: Action) -> bool:
    """Whether reconciler committed this write, however it ended."""
    return action.state in COMMITTED or failed_after_write(action)


def idempotency_key(action: Action) -> str:
    """Same target, path, before, after and desired version: the same change, whichever pass plans it."""
    return _key(action.target, action.pointer, action.before, action.after, action.desired_version)


def _key(target: str, pointer: str, before: Any, after: Any, desired_version: str) -> str:
    """SHA-256 of the five joined by 0x1F, a missing value as `~missing`, values as canonical JSON; the first
    32 hex digits. The journal stores it, so its format stays (tests/domain/test_plan.py pins it)."""
    material = "\x1f".join(
        (
            target,
            pointer,
            "~missing" if before is MISSING else canonical_json(before),
            "~missing" if after is MISSING else canonical_json(after),
            desired_version,
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]
