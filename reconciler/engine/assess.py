"""Assess one target: read live state and, unless nothing changed since the last pass, compare and classify.

Unchanged work must cost close to nothing: when the desired version, the live fingerprint and the mode are
what they were at the last good pass, and no exception has expired since, the last comparison and classes
stand, and the document is not even parsed. For a batch of targets (a run over a fleet) `fingerprints` and
`stale` go further: one bulk read, and one C-level comparison with the remembered fingerprints, leave out
every unchanged target at once.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import compress, repeat
from operator import ne
from pathlib import Path
from typing import Any, NamedTuple

from reconciler.classify.classifier import classify
from reconciler.desired import refs
from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.normalize import normalize
from reconciler.domain.drift import Classified, Comparison
from reconciler.domain.manifest import DriftClass, Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import KeyPath, PathGlob, get_in
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.domain.values import Redacted
from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import BulkReader, DiscoveryAdapter

log = logs.get_logger("reconciler.assess")
NEVER = datetime.max.replace(tzinfo=UTC)
MemoKey = tuple[str, str, Mode, str]  # basis (see `basis`), live fingerprint, effective mode, secrets' hash


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
    rework: bool = False  # looked at in full even when nothing changed (an approval may have arrived)
    target: Target | None = None  # the manifest it was made against: a memo stands only for that very object


@dataclass
class _Fresh:
    """The targets whose memo stands for one desired version and mode, by fingerprint: what a bulk check
    compares a batch of live fingerprints with, in one set operation."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    until: datetime = NEVER  # the earliest valid_until among them: the index is pruned then


class Assessor:
    """Assesses targets and remembers each one's last good assessment (in memory, per process)."""

    def __init__(self, hmac_key: bytes, secret_file_roots: Sequence[Path] = ()) -> None:
        self._hmac_key = hmac_key
        self._secret_file_roots = tuple(secret_file_roots)
        # Workers share this map; single dict operations are atomic, and a target is worked by one
        # worker at a time, so no lock is needed.
        self._memo: dict[str, Assessment] = {}
        # (desired version, mode) -> the memos that a fingerprint alone can confirm; one version at a time.
        self._fresh: dict[tuple[str, Mode], _Fresh] = {}
        self._fresh_lock = threading.Lock()

    def assess(
        self,
        state: DesiredState,
        target: Target,
        adapter: DiscoveryAdapter,
        mode: Mode,
        now: datetime,
        basis: str | None = None,
    ) -> Assessment:
        """`target` as it is now in `mode`: its memo when nothing it depends on changed, else compared in full.
        `basis`: what of the desired state besides the target itself the memo depends on (see `basis`)."""
        observed = adapter.discover(target)
        desired: dict[str, Any] = target.spec.desired
        secret_paths: list[KeyPath] = []
        secrets_hash = ""
        if target.has_references:
            desired, secret_paths = refs.resolve(target, desired, file_roots=self._secret_file_roots)
            secrets_hash = Redacted.of([get_in(desired, p) for p in secret_paths], self._hmac_key).digest
        key = (basis or state.version.digest, observed.fingerprint, mode, secrets_hash)
        memo = self._memo.get(target.name)
        if (
            memo is not None
            and memo.key == key
            and memo.target is target
            and now < memo.valid_until
            and not memo.rework
        ):
            return memo  # the same bytes, so the memo's Observed stands for this one
        desired = adapter.normalize(target, desired)
        options = CompareOptions.for_target(target, self._hmac_key)
        if secret_paths or observed.secrets:
            extra = tuple(PathGlob.literal(p) for p in secret_paths) + observed.secrets
            options = replace(options, secrets=options.secrets + extra)
        rules = target.spec.normalize
        comparison = compare(normalize(desired, rules), normalize(observed.document, rules), options)
        classified = classify(target, comparison.items, state, now)
        expiry = next_expiry(state, target, now)
        return Assessment(observed, desired, comparison, classified, key, expiry, False, target=target)

    def remembers(self, name: str) -> bool:
        """Whether `name` has a memo at all (a target without one needs a full look, whatever its file says)."""
        return name in self._memo

    def fingerprints(self, adapter: DiscoveryAdapter, targets: Mapping[str, Target]) -> dict[str, str]:
        """The live fingerprints of `targets` (all read through `adapter`) from one bulk read, for `stale`.
        Empty when the adapter cannot read in bulk, when there is only one target (its own read costs the
        same), or when the bulk read failed: each target is then read on its own by `assess`, which
        reports its error."""
        if len(targets) < 2:
            return {}
        try:
            if not isinstance(adapter, BulkReader):
                return {}
            return adapter.fingerprints(targets)
        except ReconcilerError as exc:
            log.info("bulk read failed; targets are read one by one", error=str(exc), targets=len(targets))
        except Exception:  # a bug in an adapter: the passes still run, and each fails on its own if it must
            log.exception("bulk read crashed; targets are read one by one", targets=len(targets))
        return {}

    def stale(
        self,
        state: DesiredState,
        targets: Mapping[str, Target],
        seen: Mapping[str, str],
        mode: Mode,
        now: datetime,
        basis: str | None = None,
    ) -> set[str]:
        """The names of `targets` that need a full `assess` in `mode`, given their live fingerprints `seen`
        (from `fingerprints`): every other one is unchanged since its last good pass, and `remembered` gives
        its assessment, unless its manifest changed since. A target missing from `seen` is stale.

        The batch is checked against the remembered fingerprints at C level (no Python frame per target), so
        an unchanged target costs no read of its own, no parse and no `Observed`."""
        with self._fresh_lock:
            fresh = self._fresh.get((basis or state.version.digest, mode))
            if fresh is None or not seen:
                return set(targets)
            if now >= fresh.until:
                self._prune(fresh, now)
            # Each target's fingerprint now ("" when not read) against the remembered one (None when none).
            now_fps = map(seen.get, targets, repeat(""))
            then_fps = map(fresh.fingerprints.get, targets, repeat(None))
            return set(compress(targets, map(ne, now_fps, then_fps)))

    def remembered(
        self, target: Target, state: DesiredState, mode: Mode, now: datetime, basis: str | None = None
    ) -> Assessment | None:
        """`target`'s last good assessment if it still stands for `state` (and that very manifest) in `mode` at
        `now` (for a target `stale` left out)."""
        memo = self._memo.get(target.name)
        if (
            memo is None
            or memo.key[0] != (basis or state.version.digest)
            or memo.target is not target
            or memo.key[2] is not mode
            or now >= memo.valid_until
        ):
            return None
        return memo

    def remember(self, target: str, assessment: Assessment, *, rework: bool | None = None) -> None:
        """Keep a good pass's assessment, so the next pass over the same state can skip the work. `rework`: it
        must be looked at in full again all the same (default: in apply mode, when it has escalated drift,
        so that an approval given since is picked up)."""
        rework = _rework(assessment) if rework is None else rework
        memo = assessment._replace(observed=assessment.observed.summary(), desired=None, unchanged=True, rework=rework)
        self._memo[target] = memo
        digest, fp, mode, secrets_hash = memo.key
        with self._fresh_lock:
            for other in [k for k in self._fresh if k[0] != digest]:
                del self._fresh[other]  # a new basis: the old one's memos stand no more
            for fresh in self._fresh.values():
                fresh.fingerprints.pop(target, None)
            if secrets_hash or memo.rework:
                return  # a fingerprint alone cannot confirm this memo: secrets or approvals may change
            fresh = self._fresh.setdefault((digest, mode), _Fresh())
            fresh.fingerprints[target] = fp
            fresh.until = min(fresh.until, memo.valid_until)

    def forget(self, target: str) -> None:
        """Drop a target's memo (its pass failed, or it changed live): the next pass looks in full."""
        self.forget_all((target,))

    def forget_all(self, targets: Collection[str]) -> None:
        for name in targets:
            self._memo.pop(name, None)
        with self._fresh_lock:
            for fresh in self._fresh.values():
                for name in targets:
                    fresh.fingerprints.pop(name, None)

    def _prune(self, fresh: _Fresh, now: datetime) -> None:
        """Drop the targets whose memo an exception's expiry has outdated (their classes may change)."""
        until = NEVER
        for name in list(fresh.fingerprints):
            memo = self._memo.get(name)
            if memo is None or now >= memo.valid_until:
                del fresh.fingerprints[name]
            else:
                until = min(until, memo.valid_until)
        fresh.until = until


def basis(state: DesiredState, *, across_versions: bool) -> str:
    """What a memo depends on besides its target's own manifest (which it holds) and live state: the whole
    desired version, or, `across_versions`, only the policies (classes come from them). Across versions, a
    desired-state edit that touches 1% of the targets has the other 99% keep their memos; a daemon whose
    rollout needs every target passed under each new version uses the version."""
    return state.policy_digest if across_versions else state.version.digest


def _rework(memo: Assessment) -> bool:
    """Whether a memo is looked at in full even when nothing changed: in apply mode escalated drift is, so an
    approval given since is picked up."""
    return memo.key[2] is Mode.APPLY and any(c.class_ is DriftClass.ESCALATE for c in memo.classified)


def next_expiry(state: DesiredState, target: Target, now: datetime) -> datetime:
    """The earliest future expiry of an exception that names `target`: classes may change then."""
    expiries = [
        exc.expires
        for _, _, exc in state.exceptions()
        if exc.expires > now and any(fnmatch.fnmatchcase(target.name, p) for p in exc.targets)
    ]
    return min(expiries, default=NEVER)
