"""Assess one target: read live state and, unless nothing changed since the last pass, compare and classify.

Unchanged work must cost close to nothing: when the desired version, the live fingerprint and the mode are
what they were at the last good pass, and no exception has expired since, the last comparison and classes
stand, and the document is not even parsed.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any, NamedTuple

from reconciler.classify.classifier import classify
from reconciler.diff.compare import CompareOptions, compare
from reconciler.domain.drift import Classified, Comparison
from reconciler.domain.manifest import DesiredState, Target
from reconciler.domain.observed import Observed
from reconciler.domain.run import Mode
from reconciler.ports import DiscoveryAdapter

NEVER = datetime.max.replace(tzinfo=UTC)
MemoKey = tuple[str, str, Mode]  # desired version, live fingerprint, effective mode


class Assessment(NamedTuple):
    """What one target looks like now: its drift and classes, and whether that is news.

    A NamedTuple because one is built per target per pass, and a fleet has thousands of targets.
    """

    observed: Observed
    desired: dict[str, Any] | None  # normalised into the adapter's value domain; None when unchanged
    comparison: Comparison
    classified: list[Classified]
    key: MemoKey
    valid_until: datetime  # the next exception expiry that could change a class
    unchanged: bool


class Assessor:
    """Assesses targets and remembers each one's last good assessment (in memory, per process)."""

    def __init__(self, hmac_key: bytes) -> None:
        self._hmac_key = hmac_key
        # Workers share this map; single dict operations are atomic, and a target is worked by one
        # worker at a time, so no lock is needed.
        self._memo: dict[str, Assessment] = {}

    def assess(
        self, state: DesiredState, target: Target, adapter: DiscoveryAdapter, mode: Mode, now: datetime
    ) -> Assessment:
        observed = adapter.discover(target)
        memo = self._memo.get(target.name)
        if memo is not None:
            digest, fingerprint, memo_mode = memo.key
            if (
                fingerprint == observed.fingerprint
                and digest == state.version.digest
                and memo_mode is mode
                and now < memo.valid_until
            ):
                return memo  # the same bytes, so the memo's Observed stands for this one
        key = (state.version.digest, observed.fingerprint, mode)
        desired = adapter.normalize(target, target.spec.desired)
        comparison = compare(desired, observed.document, CompareOptions.for_target(target, self._hmac_key))
        classified = classify(target, comparison.items, state, now)
        return Assessment(observed, desired, comparison, classified, key, next_expiry(state, target, now), False)

    def remember(self, target: str, assessment: Assessment) -> None:
        """Keep a good pass's assessment, so the next pass over the same state can skip the work."""
        self._memo[target] = assessment._replace(desired=None, unchanged=True)

    def forget(self, target: str) -> None:
        """Drop a target's memo (its pass failed, or it changed live): the next pass looks in full."""
        self._memo.pop(target, None)


def next_expiry(state: DesiredState, target: Target, now: datetime) -> datetime:
    """The earliest future expiry of an exception that names `target`: classes may change then."""
    expiries = [
        exc.expires
        for _, _, exc in state.exceptions()
        if exc.expires > now and any(fnmatch.fnmatchcase(target.name, p) for p in exc.targets)
    ]
    return min(expiries, default=NEVER)
