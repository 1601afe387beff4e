"""Modes, run kinds and the outcome of a pass."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How far a pass goes: dry-run stops just before the write, apply writes."""

    DRY_RUN = "dry-run"
    APPLY = "apply"

    @staticmethod
    def safer(a: Mode, b: Mode | None) -> Mode:
        """The effective mode of two: dry-run wins."""
        return Mode.DRY_RUN if Mode.DRY_RUN in (a, b) else Mode.APPLY


class RunKind(StrEnum):
    """What a run was started to do."""

    DRY_RUN = "dry-run"
    APPLY = "apply"
    ROLLBACK = "rollback"


class RunStatus(StrEnum):
    """How a run, or one target's pass within it, ended."""

    RUNNING = "running"
    CLEAN = "clean"  # live equals desired, apart from acceptable drift
    DRIFT = "drift"  # drift remains (dry-run, escalations, conflicts, unpruned keys)
    FIXED = "fixed"  # apply changed live and verified it
    FAILED = "failed"  # an error: adapter, apply, verify or rollback

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @staticmethod
    def worst(statuses: list[RunStatus]) -> RunStatus:
        return max(statuses, key=lambda s: s.severity, default=RunStatus.CLEAN)


_SEVERITY = {
    RunStatus.CLEAN: 1,
    RunStatus.FIXED: 2,
    RunStatus.DRIFT: 3,
    RunStatus.RUNNING: 4,
    RunStatus.FAILED: 5,
}
