"""Environment parity, kept current by the daemon: per app, the latest live document of each of its targets,
and each environment compared with the app's baseline (diff/parity.py, as `reconciler compare --baseline`),
the allowlist applied. An observer of pass outcomes: an unchanged pass costs a dictionary look-up; a changed
document recomputes only the pairs it is in; an allowlist entry that starts expiring or expires recomputes
the apps. One notification when an app starts to differ unexpectedly, one when it stops; none per pass.

What it keeps is small, for 10,000 targets: each document packed, its secrets hashed (engine/parity_kept.py),
and of each pair only the figures that the series need. /api/v1/parity compares the kept documents again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.classify import exceptions
from reconciler.diff import allowlist, parity
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.pacing import Pause, paced
from reconciler.domain.packed import Packed
from reconciler.domain.run import RunStatus
from reconciler.domain.state import DesiredState, wave_order
from reconciler.engine.assess import NEVER
from reconciler.engine.effects import RunRecord
from reconciler.engine.outcome import PassOutcome
from reconciler.engine.parity_apps import App, Figures, Totals, grouped, same_objects
from reconciler.engine.parity_kept import Kept, keep
from reconciler.errors import ReconcilerError
from reconciler.observe import logging as logs
from reconciler.observe.notify import Event, EventKind
from reconciler.observe.parity import EnvironmentParity, ParityStates
from reconciler.ports import Clock

log = logs.get_logger("reconciler.parity")
PATHS_SHOWN = 20  # per environment in a notification: enough to act on, bounded for a chat message
# Baseline documents kept unpacked, the most recently compared: a pass's app is most often one whose baseline was
# just compared (a batch's targets are near each other in name), and a fleet of many apps must not keep every
# baseline unpacked (~15 KB for 100 keys, six times its packed bytes).
BASELINES_UNPACKED = 256


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the daemon knows of the parity of some apps, for /api/v1/parity: the pairs whose both documents
    have been read (in `compare`'s order), the targets whose last read failed, each app's baseline."""

    results: tuple[parity.PairResult, ...]
    errors: Mapping[str, str]
    baselines: Mapping[str, str | None]
    environments: tuple[str, ...]  # every environment of an app, in rank order


class ParityWatch:
    """Keeps every app's parity against its baseline as passes read live documents (an Observer)."""

    def __init__(
        self,
        states: ParityStates,
        notify: Callable[[Event], None],
        clock: Clock,
        *,
        baseline: str | None = None,
        horizon: timedelta = timedelta(days=7),
        hmac_key: bytes = b"",
    ) -> None:
        self.states = states
        self.notify = notify
        self.clock = clock
        self.default_baseline = baseline
        self.horizon = horizon  # an entry ending within this is `expiring`
        self.hmac_key = hmac_key  # what a kept secret's hash is keyed with
        self._read: dict[str, Observed] = {}  # a target's latest read, until its pass is done
        self._documents: dict[str, Kept] = {}  # by target name
        # Baseline documents, unpacked, with the packed one each came from, least recently used first (at most
        # BASELINES_UNPACKED): the baseline is in every pair of its app, and unpacking it again for each pass of
        # another target was ~2% of a first cycle.
        self._baselines: dict[str, tuple[Packed, dict[str, Any]]] = {}
        self._errors: dict[str, str] = {}
        self._apps: dict[str, App] = {}
        self._entries: dict[str, allowlist.Entry] = {}
        self._all_entries: list[allowlist.Entry] = []
        self._state: DesiredState | None = None
        self._version: str | None = None
        self._next_change = NEVER  # when an allowlist entry next starts expiring or expires
        self._lock = threading.RLock()

    def _follow(self, state: DesiredState) -> None:
        """A new desired version reloads the apps; an allowlist entry that started expiring or expired
        re-checks them."""
        if state.version.digest != self._version:
            self.load(state)
        if self.clock.now() >= self._next_change:
            self._recheck()

    def read(self, target: Target, observed: Observed) -> None:
        """What an adapter just read for `target` (the daemon's adapters call this after each discover)."""
        self._read[target.name] = observed

    def unchanged_done(self, outcomes: Sequence[PassOutcome], run: RunRecord, state: DesiredState) -> None:
        """A batch of unchanged passes: their documents stand (nothing was read); the version and the
        allowlist's expiries are followed as by any pass."""
        for outcome in outcomes:
            self._read.pop(outcome.target.name, None)
        self._follow(state)

    def pass_done(self, outcome: PassOutcome, run: RunRecord, state: DesiredState) -> None:
        observed = self._read.pop(outcome.target.name, None)
        self._follow(state)
        target = outcome.target
        if outcome.unchanged or target.metadata.app is None:
            return
        if outcome.status is RunStatus.FAILED:
            self._errors[target.name] = outcome.error or "the pass failed"
            return  # its last good document stands: a failed read is not a change of live state
        self._errors.pop(target.name, None)
        known = self._documents.get(target.name)
        if observed is None or (known is not None and known.fingerprint == observed.fingerprint):
            return
        try:
            kept, document = keep(target, observed.fingerprint, observed.without_secrets(), self.hmac_key)
        except ReconcilerError:
            return  # the pass parsed it, so this cannot fail; if it did, the last good document stands
        with self._lock:
            if self._state is not state or target.name not in state.targets:
                return  # a newer desired version was loaded meanwhile: its first pass brings this again
            self._documents[target.name] = kept
            self._recompute(target.metadata.app, changed=target.name, document=document)

    def load(self, state: DesiredState, pause: Pause | None = None) -> None:
        """A desired version: its apps, their baselines and pairs, every series at zero for a new app, and the
        apps it changed recomputed on the documents already read (all of them when the allowlist changed). An
        app whose targets are the very objects they were (the loader keeps an unchanged target's) under the
        same policies keeps its figures without a look: an edit of 1% of the targets costs their apps, and one
        walk of every target that compares objects (at 100,000 targets, 0.3 s of a worker's time before, taken
        in one go while probes waited). `pause`: called every so often (domain/pacing.py); the daemon loads each
        version here from its reload, before a pass would."""
        with self._lock:
            if self._version == state.version.digest:
                return
            by_app, moved, removed = grouped(state, self._state, self._apps, pause)
            self._state = state
            entries = allowlist.entries(state)  # the policies': when they changed, `moved` is None
            every = entries != self._all_entries
            self._all_entries = entries
            self._entries = {e.id: e for e in self._all_entries}
            apps: dict[str, App] = {}
            changed: list[str] = []
            for app in paced(sorted(by_app if moved is None else moved.union(self._apps)), pause, step=64):
                old = self._apps.get(app)
                if moved is not None and app not in moved and old is not None:
                    apps[app] = old  # its targets are the objects they were, under the same policies
                    continue
                if not by_app.get(app):
                    continue  # none of its targets is left
                targets = sorted(by_app[app], key=wave_order)
                environments = parity.environments_of_targets(targets)
                baseline = parity.baseline_of(state, app, self.default_baseline, environments)
                if not every and old is not None and old.baseline == baseline and same_objects(old.targets, targets):
                    apps[app] = old
                    continue
                if baseline is not None and baseline not in environments:
                    log.warning("parity baseline has no target of the app", app=app, baseline=baseline)
                pairs = parity.app_pairs(app, targets, baseline)
                apps[app] = App(targets, baseline, pairs, environments, old.diverged if old is not None else False)
                changed.append(app)
            self._apps = apps
            if removed:
                self._documents = {n: d for n, d in self._documents.items() if n in state.targets}
            self._baselines = {n: d for n, d in self._baselines.items() if _is_baseline(n, state, apps)}
            self._errors = {n: e for n, e in self._errors.items() if n in state.targets}
            self.states.sync({app: [e for e in a.environments if e != a.baseline] for app, a in apps.items()})
            self._version = state.version.digest
            self._recheck(None if every else changed)

    def _recheck(self, apps: Sequence[str] | None = None) -> None:
        """The apps again (every app when None: an allowlist entry changed state, or the allowlist did), and
        when an entry next changes state."""
        with self._lock:
            now = self.clock.now()
            moments = [m for e in self._all_entries for m in (e.spec.expires - self.horizon, e.spec.expires) if m > now]
            self._next_change = min(moments, default=NEVER)
            for app in self._apps if apps is None else apps:
                self._recompute(app, changed=None)

    def _recompute(self, app: str, changed: str | None, document: dict[str, Any] | None = None) -> None:
        """The app's pairs that `changed` is in (all of them when None, or when it is the baseline's), then
        its series and whether it diverges. `document` is `changed`'s, as just kept: not unpacked again."""
        known = self._apps.get(app)
        if known is None or self._state is None:
            return
        now = self.clock.now()
        touched: set[str] = set()
        pairs = known.pairs if changed is None else known.by_target.get(changed, ())
        # Each document once: the baseline's is in every pair. Comparing changes none of them.
        unpacked: dict[str, dict[str, Any]] = {} if changed is None or document is None else {changed: document}
        for _, a, b in pairs:
            kept_a, kept_b = self._documents.get(a.name), self._documents.get(b.name)
            if kept_a is None or kept_b is None:
                continue  # until both have been read
            a_doc = unpacked.get(a.name)
            if a_doc is None:
                a_doc = unpacked[a.name] = self._unpacked(a, kept_a, known.baseline)
            b_doc = unpacked.get(b.name)
            if b_doc is None:
                b_doc = kept_b.document.unpack()
            counts = parity.count_pair(app, a, a_doc, b, b_doc, self._all_entries, now=now)
            known.put(b.name, Figures(b.environment, counts.leaves, counts.differing, counts.covered))
            touched.add(b.environment)
        for environment in touched:
            self.states.set(app, environment, self._series(known.totals[environment], now))
        self._announce(app, known, now)

    def _unpacked(self, target: Target, kept: Kept, baseline: str | None) -> dict[str, Any]:
        """`kept`'s document unpacked; a baseline's is kept unpacked until its packed document changes (no
        comparison changes a document), or until BASELINES_UNPACKED others were used since."""
        if target.environment != baseline:
            return kept.document.unpack()
        known = self._baselines.pop(target.name, None)
        if known is not None and known[0] is kept.document:
            self._baselines[target.name] = known  # the most recently used now
            return known[1]
        document = kept.document.unpack()
        self._baselines[target.name] = (kept.document, document)
        if len(self._baselines) > BASELINES_UNPACKED:
            del self._baselines[next(iter(self._baselines))]
        return document

    def _compare(self, app: str, a: Target, b: Target, now: datetime) -> parity.PairResult | None:
        """One pair on the documents kept for it, or None until both have been read."""
        kept_a, kept_b = self._documents.get(a.name), self._documents.get(b.name)
        if kept_a is None or kept_b is None:
            return None
        a_doc, b_doc = kept_a.document.unpack(), kept_b.document.unpack()
        return parity.compare_pair(app, a, a_doc, b, b_doc, self._all_entries, now=now)

    def _series(self, totals: Totals, now: datetime) -> EnvironmentParity:
        """One environment's figures (summed over its targets, when it has several)."""
        differing, leaves = totals.differing, totals.leaves
        value = EnvironmentParity(differing, 0.0 if leaves == 0 else differing * 100.0 / leaves)
        for entry_id, count in totals.entries.items():
            entry = self._entries.get(entry_id)
            if entry is not None and count:
                value.expected[exceptions.state_of(entry.spec.expires, now, self.horizon).value] += count
        return value

    def _announce(self, app: str, known: App, now: datetime) -> None:
        """Once when the app starts to differ unexpectedly (paths only, never values), once when it stops."""
        diverged = known.differing_pairs > 0
        if diverged == known.diverged:
            return
        known.diverged = diverged
        if diverged:
            unexpected: dict[str, set[str]] = {}
            for _, a, b in known.pairs:
                figures = known.results.get(b.name)
                if figures is None or not figures.differing:
                    continue
                result = self._compare(app, a, b, now)  # its items: once, when the app starts to differ
                if result is not None:
                    unexpected.setdefault(b.environment, set()).update(i.pointer for i in result.unexpected)
            count = sum(len(paths) for paths in unexpected.values())
            where = ", ".join(sorted(unexpected))
            summary = f"{app}: {count} unexpected difference(s) from {known.baseline} in {where}"
            details = {
                "app": app,
                "baseline": known.baseline,
                "environments": {e: sorted(p)[:PATHS_SHOWN] for e, p in sorted(unexpected.items())},
            }
            log.warning("environments diverged", app=app, baseline=known.baseline, environments=sorted(unexpected))
            self.notify(Event(EventKind.PARITY_DIVERGED, app, summary, details))
        else:
            log.info("environments converged", app=app, baseline=known.baseline)
            summary = f"{app}: every environment matches {known.baseline} again, allowlisted differences aside"
            self.notify(Event(EventKind.PARITY_CONVERGED, app, summary, {"app": app, "baseline": known.baseline}))

    def snapshot(self, app: str | None = None) -> Snapshot:
        """The current parity of `app` (every app when None), as `compare --baseline` would give it now: the
        pairs compared again on the kept documents, outside the lock, so that passes go on meanwhile."""
        with self._lock:
            chosen = [a for a in sorted(self._apps) if app is None or a == app]
            work: list[tuple[str, Target, Kept, Target, Kept]] = []
            errors: dict[str, str] = {}
            for name in chosen:
                known = self._apps[name]
                for _, a, b in known.pairs:
                    kept_a, kept_b = self._documents.get(a.name), self._documents.get(b.name)
                    if kept_a is not None and kept_b is not None:
                        work.append((name, a, kept_a, b, kept_b))
                members = {t.name for _, a, b in known.pairs for t in (a, b)}
                errors.update({n: e for n, e in self._errors.items() if n in members})
            environments = parity.environments_of(self._state) if self._state is not None else []
            baselines = {n: self._apps[n].baseline for n in chosen}
            entries = self._all_entries
        now = self.clock.now()
        results = tuple(
            parity.compare_pair(name, a, kept_a.document.unpack(), b, kept_b.document.unpack(), entries, now=now)
            for name, a, kept_a, b, kept_b in work
        )
        return Snapshot(results, errors, baselines, tuple(environments))

    def apps(self) -> list[str]:
        with self._lock:
            return sorted(self._apps)


def _is_baseline(name: str, state: DesiredState, apps: Mapping[str, App]) -> bool:
    target = state.targets.get(name)
    app = None if target is None else apps.get(target.metadata.app or "")
    return app is not None and target is not None and target.environment == app.baseline
