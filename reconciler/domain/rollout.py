"""Progressive rollout of a desired version: its writes go in waves, and a failed wave holds the later ones.

A later wave's targets are written only when every target of the earlier waves has been passed under the
version without anything left to write (its fixes verified, or none needed) and the bake time has passed
since the last write there. A failed or rolled-back write holds every later wave until an operator
releases the version or a new version replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class Progress(StrEnum):
    """Where one target is in a version's rollout."""

    PENDING = "pending"  # has something to write that a wave hold (or a limit) kept back
    DONE = "done"  # nothing left to write under this version: verified, or nothing needed
    FAILED = "failed"  # a write failed or was rolled back: the later waves are held
    RELEASED = "released"  # failed, and an operator released the hold: counts as done


class TargetProgress(NamedTuple):
    target: str
    wave: int
    state: Progress
    at: datetime | None  # the last verified write (None: no write needed) or the failure
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """A version's held waves: every wave after `wave` is held, from `at`, because of `reason`."""

    version: str
    wave: int
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class WaveState:
    """One wave of a rollout, as `reconciler rollout status` shows it."""

    wave: int
    targets: int
    done: int
    pending: int
    failed: int
    open: bool
    why: str | None  # why it is not open yet: a hold, targets still to verify, the bake time
