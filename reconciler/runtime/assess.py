"""Assess one target: read live state and, unless nothing changed since the last pass, compare and classify.

Unchanged work must cost close to nothing: when the desired version, the live fingerprint and the mode are
what they were at the last good pass, and no exception has expired since, the last comparison and classes
stand, and the document is not even parsed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.classify.classifier import classify
from reconciler.desired import refs
from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.normalize import normalize
from reconciler.domain.drift import Classified, Comparison
from reconciler.domain.manifest import DriftClass, Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import KeyPath, PathGlob, get_in, to_pointer
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.domain.values import Redacted
from reconciler.ports import DiscoveryAdapter

NEVER = datetime.max.replace(tzinfo=UTC)
MemoKey = tuple[str, str, Mode, str]  # desired version, live fingerprint, effective mode, secrets' hash


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

    def __init__(self, hmac_key: bytes, secret_file_roots: Sequence[Path] = ()) -> None:
        self._hmac_key = hmac_key
        self._secret_file_roots = tuple(secret_file_roots)
        # Workers share this map; single dict operations are atomic, and a target is worked by one
        # worker at a time, so no lock is needed.
        self._memo: dict[str, Assessment] = {}

    def assess(
        self, state: DesiredState, target: Target, adapter: DiscoveryAdapter, mode: Mode, now: datetime
    ) -> Assessment:
        observed = adapter.discover(target)
        desired: dict[str, Any] = target.spec.desired
        secret_paths: list[KeyPath] = []
        secrets_hash = ""
        if target.has_references:
            desired, secret_paths = refs.resolve(target, desired, file_roots=self._secret_file_roots)
            secrets_hash = Redacted.of([get_in(desired, p) for p in secret_paths], self._hmac_key).digest
        key = (state.version.digest, observed.fingerprint, mode, secrets_hash)
        memo = self._memo.get(target.name)
        if (
            memo is not None
            and memo.key == key  # the same desired version, live bytes, mode and secrets
            and now < memo.valid_until
            # In apply mode escalated drift is looked at in full, so an approval given since is picked up.
            and not (mode is Mode.APPLY and any(c.class_ is DriftClass.ESCALATE for c in memo.classified))
        ):
            return memo  # the same bytes, so the memo's Observed stands for this one
        desired = adapter.normalize(target, desired)
        options = CompareOptions.for_target(target, self._hmac_key)
        if secret_paths:
            extra = tuple(PathGlob.parse(to_pointer(p)) for p in secret_paths)
            options = replace(options, secrets=options.secrets + extra)
        rules = target.spec.normalize
        comparison = compare(normalize(desired, rules), normalize(observed.document, rules), options)
        classified = classify(target, comparison.items, state, now)
        return Assessment(observed, desired, comparison, classified, key, next_expiry(state, target, now), False)

    def remember(self, target: str, assessment: Assessment) -> None:
        """Keep a good pass's assessment, so the next pass over the same state can skip the work."""
        self._memo[target] = assessment._replace(observed=assessment.observed.summary(), desired=None, unchanged=True)

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
