"""What runs where: the effective value of every key of every target, as a report for auditors and on-call.

Built by runtime/inventory.py from live state, the desired state and history; rendered by present/inventory.py.
Secret values are only ever their keyed hash (`Redacted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple


class TargetHistory(NamedTuple):
    """What history says about one target, for the report."""

    last_pass_at: datetime | None
    last_clean_at: datetime | None
    last_version: str | None
    last_git_commit: str | None
    drifting_since: dict[str, datetime]  # by JSON pointer


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key of a target: what live holds, what is desired, and whether they agree."""

    pointer: str
    live: Any  # the effective value (MISSING: not set live); a secret as Redacted
    desired: Any  # MISSING: not desired (an unmanaged live key)
    matches: bool
    secret: bool = False
    layer: str | None = None  # for a layered source: the layer whose value wins
    drift_class: str | None = None  # acceptable, reversible, escalate; None when it matches
    decided_by: str | None = None
    drifting_since: datetime | None = None  # the first recorded pass of the current streak of drift


@dataclass(frozen=True, slots=True)
class ExceptionInForce:
    """A policy exception that covers some of a target's keys now."""

    id: str  # "default/0"
    paths: tuple[str, ...]
    owner: str
    reason: str
    expires: datetime
    ticket: str | None = None


@dataclass(frozen=True, slots=True)
class TargetInventory:
    """One target: where it is read, each key's state, and what history says about it."""

    target: str
    app: str
    environment: str
    location: str | None
    keys: tuple[KeyState, ...]
    exceptions: tuple[ExceptionInForce, ...]
    last_pass_at: datetime | None  # the newest recorded pass (passes of unchanged targets are not recorded)
    last_clean_at: datetime | None  # the newest recorded pass that found live equal to desired (or fixed it)
    last_version: str | None  # the desired version that pass measured against
    last_git_commit: str | None
    error: str | None = None  # why live could not be read

    @property
    def drifting(self) -> int:
        return sum(1 for k in self.keys if not k.matches)


@dataclass(frozen=True, slots=True)
class Inventory:
    """The report: every chosen target, by app and environment, at one moment, against one desired version."""

    at: datetime
    desired_version: str
    git_commit: str | None
    git_dirty: bool
    targets: tuple[TargetInventory, ...]
