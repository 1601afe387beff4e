"""The allowlist of environment parity: `expected_differences` entries of policies, which of them cover a pair
of environments, and which have expired or gone stale (their paths no longer differ anywhere they apply)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from reconciler.domain.paths import KeyPath, any_match
from reconciler.domain.policy import ExpectedDifference
from reconciler.domain.state import DesiredState


@dataclass(frozen=True, slots=True)
class Entry:
    """One expected_differences entry, named as every output names it: `policy/expected/index`."""

    policy: str
    index: int
    spec: ExpectedDifference

    @property
    def id(self) -> str:
        return f"{self.policy}/expected/{self.index}"

    def applies(self, app: str, environments: tuple[str, str]) -> bool:
        """Whether the entry is about this app, and about this pair of environments (both among its own)."""
        if not any(fnmatch.fnmatchcase(app, p) for p in self.spec.apps):
            return False
        return not self.spec.environments or set(environments) <= set(self.spec.environments)

    def covers(self, path: KeyPath) -> bool:
        return any_match(self.spec.paths, path)

    def active(self, now: datetime) -> bool:
        return self.spec.expires > now

    def describe(self) -> str:
        """Reason, owner and expiry (as written: a date holds through that day)."""
        return f"{self.spec.reason} (owner {self.spec.owner}, expires {self.spec.expires_text})"


def entries(state: DesiredState) -> list[Entry]:
    return [Entry(p.metadata.name, i, e) for p in state.policies for i, e in enumerate(p.spec.expected_differences)]


@dataclass(frozen=True, slots=True)
class Finding:
    """An allowlist entry that needs a person: it has expired, or it allows a difference that is not there."""

    entry: Entry
    state: str  # "expired" or "stale"
    message: str

    @property
    def id(self) -> str:
        return self.entry.id


@dataclass(frozen=True, slots=True)
class Use:
    """Where an entry was looked at: one pair it applies to, and whether it covered a difference there."""

    entry: Entry
    covered: bool


def audit(uses: Sequence[Use], now: datetime) -> list[Finding]:
    """Expired and stale entries among those that applied to a compared pair, in policy order. An entry that
    applied to no compared pair is not judged: nothing was compared that it is about."""
    seen: dict[str, Entry] = {}
    covered: set[str] = set()
    for use in uses:
        seen.setdefault(use.entry.id, use.entry)
        if use.covered:
            covered.add(use.entry.id)
    findings = []
    for entry in sorted(seen.values(), key=lambda e: (e.policy, e.index)):
        paths = ", ".join(str(p) for p in entry.spec.paths)
        if not entry.active(now):
            findings.append(
                Finding(
                    entry, "expired", f"{entry.id} expired {entry.spec.expires_text} ({paths}): {entry.spec.reason}"
                )
            )
        elif entry.id not in covered:
            findings.append(
                Finding(
                    entry,
                    "stale",
                    f"{entry.id} allows a difference that is not there: no compared pair differs at {paths}; "
                    f"remove it ({entry.spec.reason})",
                )
            )
    return findings
