"""The exceptions inventory: which are active, which expire soon, which have expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.domain.policy import PolicyException
from reconciler.domain.state import DesiredState


class ExceptionState(StrEnum):
    ACTIVE = "active"
    EXPIRING = "expiring"  # active, and ends within the warning horizon
    EXPIRED = "expired"  # no longer covers anything: its drift is classified by the rules again


@dataclass(frozen=True, slots=True)
class ExceptionStatus:
    policy: str
    index: int
    exception: PolicyException
    state: ExceptionState
    remaining: timedelta  # negative once expired

    @property
    def id(self) -> str:
        return f"{self.policy}/{self.index}"


def inventory(state: DesiredState, now: datetime, horizon: timedelta) -> list[ExceptionStatus]:
    """Every exception with its state, soonest expiry first."""
    result = []
    for policy, index, exc in state.exceptions():
        remaining = exc.expires - now
        if remaining <= timedelta(0):
            status = ExceptionState.EXPIRED
        elif remaining <= horizon:
            status = ExceptionState.EXPIRING
        else:
            status = ExceptionState.ACTIVE
        result.append(ExceptionStatus(policy, index, exc, status, remaining))
    return sorted(result, key=lambda s: s.exception.expires)
