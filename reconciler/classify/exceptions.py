"""The inventory of everything in policies that expires: exceptions (acceptable drift of a target) and
expected_differences (the allowlist of environment parity); which are active, expiring soon, or expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.domain.policy import ExpectedDifference, PolicyException
from reconciler.domain.state import DesiredState


class ExceptionState(StrEnum):
    ACTIVE = "active"
    EXPIRING = "expiring"  # active, and ends within the warning horizon
    EXPIRED = "expired"  # no longer covers anything: its drift is classified by the rules again


class EntryKind(StrEnum):
    EXCEPTION = "exception"  # spec.exceptions: drift of a target that is acceptable
    EXPECTED_DIFFERENCE = "expected_difference"  # spec.expected_differences: parity allowlist


@dataclass(frozen=True, slots=True)
class ExceptionStatus:
    policy: str
    index: int
    exception: PolicyException | ExpectedDifference
    state: ExceptionState
    remaining: timedelta  # negative once expired

    @property
    def kind(self) -> EntryKind:
        if isinstance(self.exception, PolicyException):
            return EntryKind.EXCEPTION
        return EntryKind.EXPECTED_DIFFERENCE

    @property
    def id(self) -> str:
        """`policy/index` for an exception, `policy/expected/index` for an expected difference."""
        if self.kind is EntryKind.EXCEPTION:
            return f"{self.policy}/{self.index}"
        return expected_id(self.policy, self.index)

    @property
    def scope(self) -> str:
        """What the entry covers besides its paths: target names, or apps and the environments of the pair."""
        entry = self.exception
        if isinstance(entry, PolicyException):
            return "targets " + ",".join(entry.targets)
        among = f" in {','.join(entry.environments)}" if entry.environments else ""
        return "apps " + ",".join(entry.apps) + among

    @property
    def ticket(self) -> str | None:
        return self.exception.ticket if isinstance(self.exception, PolicyException) else None


def expected_id(policy: str, index: int) -> str:
    """How an expected_differences entry is named in every output: `policy/expected/index`."""
    return f"{policy}/expected/{index}"


def state_of(expires: datetime, now: datetime, horizon: timedelta) -> ExceptionState:
    remaining = expires - now
    if remaining <= timedelta(0):
        return ExceptionState.EXPIRED
    if remaining <= horizon:
        return ExceptionState.EXPIRING
    return ExceptionState.ACTIVE


def inventory(state: DesiredState, now: datetime, horizon: timedelta) -> list[ExceptionStatus]:
    """Every exception and expected difference with its state, soonest expiry first."""
    entries: list[tuple[str, int, PolicyException | ExpectedDifference]] = [*state.exceptions()]
    entries += [(p.metadata.name, i, e) for p in state.policies for i, e in enumerate(p.spec.expected_differences)]
    result = [
        ExceptionStatus(policy, index, entry, state_of(entry.expires, now, horizon), entry.expires - now)
        for policy, index, entry in entries
    ]
    return sorted(result, key=lambda s: s.exception.expires)
