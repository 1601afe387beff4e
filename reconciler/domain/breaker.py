"""The circuit breaker: when too many writes fail, stop writing until a cool-down passes or a person says so.

Detection goes on while it is open: passes still compare, classify and record, in dry-run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class Breaker:
    state: BreakerState
    reason: str | None = None
    opened_at: datetime | None = None
    until: datetime | None = None
    changed_by: str | None = None

    def is_open(self, now: datetime) -> bool:
        return self.state is BreakerState.OPEN and (self.until is None or now < self.until)


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """Defaults match the settings' (RECONCILER_BREAKER__*)."""

    window_s: float = 600.0
    failure_ratio: float = 0.5
    min_writes: int = 5
    cooldown_s: float = 900.0

    def exceeded(self, failed: int, total: int) -> str | None:
        """Why the breaker should open, given the writes that ended in the window, or None."""
        if total < self.min_writes or total == 0:
            return None
        ratio = failed / total
        if ratio <= self.failure_ratio:
            return None
        return (
            f"{failed} of {total} writes failed or were rolled back in the last {self.window_s:g}s "
            f"({ratio:.0%} > {self.failure_ratio:.0%})"
        )
