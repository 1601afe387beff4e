"""Environment parity: does staging match production? Pairs of an app's targets compared, every pair of the
environments given (batch) or each environment against a baseline.

Left out of every pair: both targets' ignore globs, secrets (and `${...}` references) and
environment_specific paths. Differences an active `expected_differences` entry covers are shown as
expected and do not count; an expired entry counts again. The drift of a pair is DESIGN.md's: differing leaf
paths (unexpected ones) over the union of leaf paths after the left-out paths; every count shown is a leaf
count, so counts and percentage agree. Significance compares that fraction with the threshold exactly
(reconciler.diff.significance).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from itertools import combinations
from typing import Any

from reconciler.diff import allowlist, significance
from reconciler.diff.compare import CompareOptions, compare
from reconciler.diff.normalize import normalize
from reconciler.diff.walk import count_leaves
from reconciler.domain.drift import Comparison, DriftItem
from reconciler.domain.manifest import DriftOp, Target, environment_rank, reference_paths
from reconciler.domain.paths import KeyPath, PathGlob, to_pointer
from reconciler.domain.state import DesiredState
from reconciler.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class ParityItem:
    """One key that differs between the two environments of a pair."""

    path: KeyPath
    kind: str  # "differs", "type differs", "only in <a>", "only in <b>"
    a: Any  # MISSING when only in b
    b: Any  # MISSING when only in a
    expected: bool
    note: str = ""  # the allowlist entry's reason (or that it has expired)
    leaves: int = 1  # leaf paths this difference stands for (a map on one side only: its leaves)
    entry: str | None = None  # the id of the allowlist entry that covers it (active or expired)

    @property
    def pointer(self) -> str:
        return to_pointer(self.path)


@dataclass
class PairResult:
    """One app in two environments (with a baseline, `a` is the baseline's target)."""

    app: str
    a: Target
    b: Target
    items: list[ParityItem] = field(default_factory=list)
    leaves: int = 0  # the union of leaf paths of both documents after the left-out paths
    differing: int = 0  # unexpected differing leaf paths
    threshold: Fraction = significance.DEFAULT
    expected_leaves: int = 0  # differing leaf paths that an active allowlist entry covers
    uses: list[allowlist.Use] = field(default_factory=list)  # allowlist entries about this pair

    @property
    def drift_fraction(self) -> Fraction:
        """Unexpected differing leaves over all leaves, exactly."""
        return significance.fraction(self.differing, self.leaves)

    @property
    def drift_percent(self) -> float:
        """The drift fraction times 100, unrounded (as near as a float gets: 9/125 is 7.2)."""
        return float(self.drift_fraction * 100)

    @property
    def significant(self) -> bool:
        return significance.exceeds(self.differing, self.leaves, self.threshold)

    @property
    def unexpected(self) -> list[ParityItem]:
        return [i for i in self.items if not i.expected]


def environments_of(state: DesiredState) -> list[str]:
    """Environments that have a target belonging to an app, in rank order."""
    return environments_of_targets([t for t in state.targets.values() if t.metadata.app])


def environments_of_targets(targets: Sequence[Target]) -> list[str]:
    """The environments of `targets`, in rank order."""
    return sorted({t.environment for t in targets}, key=lambda e: (environment_rank(e), e))


def check_environments(state: DesiredState, environments: Sequence[str]) -> None:
    """Refuse an environment that no target of an app has: a typo must never pass as 'no differences'."""
    known = environments_of(state)
    unknown = [e for e in environments if e not in known]
    if unknown:
        raise ConfigurationError(
            f"no target of an app is in environment {unknown[0]!r}; environments: {', '.join(known) or 'none'}"
        )


def pairs(
    state: DesiredState, environments: Sequence[str], apps: Sequence[str] = (), baseline: str | None = None
) -> list[tuple[str, Target, Target]]:
    """(app, a, b) per app: every pair of the given environments, lower rank first; with a baseline, the
    baseline's target against each other environment's (an app without a target in the baseline has none)."""
    wanted = set(environments) | ({baseline} if baseline else set())
    by_app: dict[str, list[Target]] = {}
    for target in state.ordered_targets():
        app = target.metadata.app
        if app is None or target.environment not in wanted:
            continue
        if apps and not any(fnmatch.fnmatchcase(app, p) for p in apps):
            continue
        by_app.setdefault(app, []).append(target)
    return [pair for app in sorted(by_app) for pair in app_pairs(app, by_app[app], baseline)]


def app_pairs(app: str, targets: Sequence[Target], baseline: str | None) -> list[tuple[str, Target, Target]]:
    """The pairs of one app's targets: every pair of environments, lower rank first; with a baseline, the
    baseline's (first) target against each target of every other environment, in rank order."""
    ranked = sorted(targets, key=lambda t: (environment_rank(t.environment), t.environment, t.name))
    if baseline is None:
        return [(app, a, b) for a, b in combinations(ranked, 2) if a.environment != b.environment]
    bases = [t for t in ranked if t.environment == baseline]
    return [(app, base, t) for base in bases[:1] for t in ranked if t.environment != baseline]


def baseline_of(state: DesiredState, app: str, default: str | None, environments: Sequence[str]) -> str | None:
    """An app's baseline environment: the first policy `parity_baselines` entry whose `apps` glob matches it,
    else `default`, else the lowest-ranked of `environments` (the app's own, in rank order)."""
    for policy in state.policies:
        for entry in policy.spec.parity_baselines:
            if any(fnmatch.fnmatchcase(app, p) for p in entry.apps):
                return entry.environment
    return default or (environments[0] if environments else None)


@dataclass(frozen=True, slots=True)
class PairCounts:
    """A pair's figures without its items: what a series needs."""

    leaves: int
    differing: int  # unexpected differing leaves
    covered: tuple[tuple[str, int], ...]  # (allowlist entry id, differing leaves it covers, active or expired)


def compare_pair(
    app: str,
    a: Target,
    a_doc: Mapping[str, Any],
    b: Target,
    b_doc: Mapping[str, Any],
    entries: Sequence[allowlist.Entry],
    *,
    now: datetime,
    threshold: Fraction = significance.DEFAULT,
) -> PairResult:
    """Compare one app's documents in two environments, the allowlist entries about them applied."""
    about = [e for e in entries if e.applies(app, (a.environment, b.environment))]
    return _result(app, a, b, _comparison(a, a_doc, b, b_doc), about, now, threshold)


def count_pair(
    app: str,
    a: Target,
    a_doc: Mapping[str, Any],
    b: Target,
    b_doc: Mapping[str, Any],
    entries: Sequence[allowlist.Entry],
    *,
    now: datetime,
) -> PairCounts:
    """compare_pair's figures: the same counts, without an item built for each difference when no allowlist
    entry is about the pair (a pair of 100-key documents that differ everywhere: 18 us instead of 250)."""
    about = [e for e in entries if e.applies(app, (a.environment, b.environment))]
    comparison = _comparison(a, a_doc, b, b_doc, items=bool(about))
    if not about:
        return PairCounts(comparison.leaves, comparison.differing, ())
    result = _result(app, a, b, comparison, about, now, significance.DEFAULT)
    covered: dict[str, int] = {}
    for item in result.items:
        if item.entry is not None:
            covered[item.entry] = covered.get(item.entry, 0) + item.leaves
    return PairCounts(result.leaves, result.differing, tuple(covered.items()))


def _comparison(
    a: Target, a_doc: Mapping[str, Any], b: Target, b_doc: Mapping[str, Any], *, items: bool = True
) -> Comparison:
    left_out = tuple(
        [*a.spec.ignore, *b.spec.ignore, *a.spec.secrets, *b.spec.secrets]
        + [*a.spec.environment_specific, *b.spec.environment_specific]
        + [PathGlob.literal(p) for t in (a, b) if t.has_references for p in reference_paths(t.spec.desired)]
    )
    rules = [*a.spec.normalize, *b.spec.normalize]
    options = CompareOptions(ignore=left_out, list_keys={**a.list_keys(), **b.list_keys()})
    return compare(normalize(dict(a_doc), rules), normalize(dict(b_doc), rules), options, items=items)


def _result(
    app: str,
    a: Target,
    b: Target,
    comparison: Comparison,
    about: Sequence[allowlist.Entry],
    now: datetime,
    threshold: Fraction,
) -> PairResult:
    result = PairResult(app, a, b, leaves=comparison.leaves, threshold=threshold)
    covered: set[str] = set()
    for item in comparison.items:
        covering = [e for e in about if e.covers(item.path)]
        active = [e for e in covering if e.active(now)]
        leaves = _leaves(item)
        entry = (active or covering)[0].id if covering else None
        if entry is not None:
            covered.add(entry)
        if active:
            note = active[0].describe()
            result.expected_leaves += leaves
        elif covering:
            gone = covering[0]
            note = f"allowlist entry {gone.id} expired {gone.spec.expires_text}: {gone.spec.reason}"
            result.differing += leaves
        else:
            note = ""
            result.differing += leaves
        kind = _kind(item, a, b)
        result.items.append(ParityItem(item.path, kind, item.desired, item.observed, bool(active), note, leaves, entry))
    result.uses = [allowlist.Use(e, e.id in covered) for e in about]
    return result


def _kind(item: DriftItem, a: Target, b: Target) -> str:
    if item.op is DriftOp.ADD:
        return f"only in {b.environment}"
    if item.op is DriftOp.REMOVE:
        return f"only in {a.environment}"
    return "differs" if item.op is DriftOp.CHANGE else "type differs"


def _leaves(item: DriftItem) -> int:
    """The leaf paths one difference stands for, counted as the walk counted them."""
    if type(item.desired) is dict or type(item.observed) is dict:
        return count_leaves(item.desired) + count_leaves(item.observed)
    return 1


def compare_environments(
    state: DesiredState,
    environments: Sequence[str],
    *,
    documents: Mapping[str, Mapping[str, Any]] | None = None,
    apps: Sequence[str] = (),
    threshold: significance.Threshold = significance.DEFAULT,
    baseline: str | None = None,
    now: datetime,
) -> list[PairResult]:
    """Every pair of `environments` for every app (or the `apps` given), or with `baseline` each of them
    against the baseline only, on `documents` by target name (live documents, say) or on the desired state
    when None. A pair whose document is missing from `documents` (its target could not be read) is left out.
    An environment (or baseline) that no target of an app has is a ConfigurationError."""
    check_environments(state, [*environments, *([baseline] if baseline else [])])
    exact = _threshold(threshold)
    entries = allowlist.entries(state)
    results = []
    for app, a, b in pairs(state, environments, apps, baseline):
        a_doc: Mapping[str, Any]
        b_doc: Mapping[str, Any]
        if documents is None:
            a_doc, b_doc = a.spec.desired, b.spec.desired
        elif a.name in documents and b.name in documents:
            a_doc, b_doc = documents[a.name], documents[b.name]
        else:
            continue
        results.append(compare_pair(app, a, a_doc, b, b_doc, entries, now=now, threshold=exact))
    return results


def _threshold(value: significance.Threshold) -> Fraction:
    try:
        return significance.parse(value)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def findings(results: Sequence[PairResult], now: datetime) -> list[allowlist.Finding]:
    """Allowlist entries about the compared pairs that have expired, or that cover no difference in any of
    them (stale: remove them)."""
    return allowlist.audit([u for r in results for u in r.uses], now)
