"""Actions: one planned change of one path, and its journal states."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Action:
    """Set `path` of `target` from `before` to `after` (MISSING after: delete), guarded by `before`."""

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
    idempotency_key: str = field(default="")
    # `path` as a JSON Pointer, rendered once (given by with_state): the key, the journal and messages use it.
    pointer: str = field(repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if not self.pointer:
            object.__setattr__(self, "pointer", to_pointer(self.path))
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", idempotency_key(self))

    @property
    def verb(self) -> str:
        if self.after is MISSING:
            return "delete"
        return "add" if self.before is MISSING else "set"

    def with_state(self, state: ActionState, error: str | None = None) -> Action:
        # Spelled out rather than dataclasses.replace, which costs several times more (one call per action
        # and state change: 100,000 in a pass with that many drifted keys).
        return Action(
            self.id,
            self.run_id,
            self.target,
            self.path,
            self.op,
            self.before,
            self.after,
            self.desired_version,
            self.reason,
            self.secret,
            self.rollback_of,
            state,
            error,
            self.idempotency_key,
            self.pointer,
        )

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
    """Same target, path, before, after and desired version: the same change, whichever pass plans it.

    SHA-256 of the five joined by 0x1F, a missing value as `~missing`, values as canonical JSON; the first 32
    hex digits. Spelled out without helpers: a pass with 100,000 drifted keys computes 100,000 of these."""
    before, after = action.before, action.after
    material = "\x1f".join(
        (
            action.target,
            action.pointer,
            "~missing" if before is MISSING else canonical_json(before),
            "~missing" if after is MISSING else canonical_json(after),
            action.desired_version,
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]
