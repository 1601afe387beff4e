"""What each target's last pass found, kept in plain dicts and exported aggregated by environment and app at
scrape time (per target only when asked), written in the text format directly: see metrics.py for why."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from operator import attrgetter, is_, itemgetter
from types import MappingProxyType
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CLASSES = ("acceptable", "reversible", "escalate")
# No drift of any class: most targets' last pass, one read-only map for all of them (a dict each was ~0.2 KB).
NO_DRIFT: Mapping[str, int] = MappingProxyType(dict.fromkeys(CLASSES, 0))
_EVERY_PASS = frozenset({"last_success"})  # what changes with every pass: rendered from the members each scrape


@dataclass(slots=True)
class _Target:
    environment: str
    app: str
    drift: Mapping[str, int] = field(default_factory=lambda: NO_DRIFT)
    pending: int = 0
    last_success: float = 0.0
    open_since: float = 0.0
    group: _Group | None = None  # set by TargetStates._rebuild
    index: int = 0  # its place among its group's members


class _Group:
    """One (environment, app)'s members and their sums, kept up to date as their passes land, so that a scrape
    writes a changed group's lines from a few numbers instead of going through its members. During a first
    cycle every group changes between two scrapes; summing them all from the members took ~76 ms a scrape at
    100,000 targets. The oldest open drift is a minimum: found again from the members only when the target
    that held it closes its drift (`stale`). The members' last successes are also kept in one list, whose
    minimum is taken at each scrape in C: taken from the members' attributes, it was 25 of a scrape's 33 ms at
    100,000 targets, and a scrape during a first cycle or an edit waits for the interpreter all that time."""

    __slots__ = ("drifting", "heads", "kept", "members", "oldest", "pending", "stale", "successes", "totals", "version")

    def __init__(self, members: list[_Target]) -> None:
        self.members = members
        drifts = list(map(_DRIFT, members))
        self.totals = [sum(map(itemgetter(class_), drifts)) for class_ in CLASSES]
        opened = list(filter(None, map(_OPEN, members)))
        self.drifting = len(opened)
        self.pending: int = sum(map(_PENDING, members))
        self.oldest: float = min(opened, default=0.0)
        self.stale = False
        self.version = 0  # one more with every change of the sums
        self.kept: tuple[int, tuple[str, ...]] | None = None  # the lines of `version` (the last success's aside)
        self.heads: tuple[str, ...] = ()  # each line's start, up to its value (_heads), made at its first render
        self.successes: list[float] = list(map(_SUCCESS, members))
        for index, member in enumerate(members):
            member.group, member.index = self, index

    def move(self, key: str, old: Any, new: Any) -> None:
        """A member's `key` went from `old` to `new` (not the last success: it is taken at each scrape)."""
        if key == "drift":
            totals = self.totals
            for index, class_ in enumerate(CLASSES):
                totals[index] += new[class_] - old[class_]
        elif key == "pending":
            self.pending += new - old
        elif key == "open_since":
            self.drifting += bool(new) - bool(old)
            if old and old <= self.oldest:
                self.stale = True  # the member that had the oldest open drift closed it (or moved it)
            elif new and not self.stale and (not self.oldest or new < self.oldest):
                self.oldest = new
        self.version += 1

    def sums(self) -> tuple[int, tuple[list[int], int, int, float]]:
        """The version and what the lines are written from; called under TargetStates' lock."""
        if self.stale:
            self.oldest, self.stale = min(filter(None, map(_OPEN, self.members)), default=0.0), False
        return self.version, (list(self.totals), self.drifting, self.pending, self.oldest)


def _succeeded(state: _Target, at: Any) -> None:
    state.last_success = at
    if state.group is not None:
        state.group.successes[state.index] = at


def _set(state: _Target, values: dict[str, Any]) -> None:
    """Sets a target's values (under TargetStates' lock) and moves its group's sums by what changed."""
    for key, value in values.items():
        if key in _EVERY_PASS:
            _succeeded(state, value)
            continue
        old = getattr(state, key)
        if old != value:
            setattr(state, key, value)
            if state.group is not None:
                state.group.move(key, old, value)


class TargetStates(Collector):
    """Each target's last pass, exported aggregated by environment and app (and per target if asked)."""

    def __init__(self, per_target: bool = False) -> None:
        self.per_target = per_target
        self._wanted: dict[str, tuple[str, str]] = {}  # replicas: the desired state's targets, (environment, app)
        self._held: Set[str] | None = None  # replicas: the targets this one leases (None: every target)
        self._targets: dict[str, _Target] = {}
        self._groups: dict[tuple[str, str], _Group] = {}  # by (environment, app), sorted; rebuilt by sync
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()  # one render at a time: each writes the groups' kept lines

    def sync(self, targets: Iterable[tuple[str, str, str]]) -> None:
        """The targets of the desired state, (name, environment, app); others are forgotten."""
        # One (environment, app) pair object for all the targets of that pair: on a replica this map holds every
        # target of the desired state, and a pair each cost 56 bytes a target (17 MB at 300,000). Made before the
        # lock is taken: a scrape waits for the lock.
        pairs: dict[tuple[str, str], tuple[str, str]] = {}
        wanted = {name: pairs.setdefault((environment, app), (environment, app)) for name, environment, app in targets}
        with self._lock:
            self._rebuild(wanted)
            # Only a replica needs the targets it does not export; one daemon exports them all (_targets).
            self._wanted = wanted if self._held is not None else {}

    def hold(self, names: Set[str]) -> None:
        """Replicas: export only the targets this replica leases. Another replica's targets never pass here,
        and would show as never passed (an alert on the oldest successful pass) or keep the drift they had
        when their lease moved (counted twice)."""
        with self._lock:
            if self._held is None:  # every target exported so far: they are the desired state's
                self._wanted = {name: (state.environment, state.app) for name, state in self._targets.items()}
            self._held = frozenset(names)
            self._rebuild(self._wanted)

    def _rebuild(self, wanted: dict[str, tuple[str, str]]) -> None:
        held = self._held
        if held is not None:
            wanted = {name: where for name, where in wanted.items() if name in held}
        for name in list(self._targets):
            if name not in wanted or (self._targets[name].environment, self._targets[name].app) != wanted[name]:
                del self._targets[name]
        for name, (environment, app) in wanted.items():
            self._targets.setdefault(name, _Target(environment, app))
        members: dict[tuple[str, str], list[_Target]] = {}
        for state in self._targets.values():
            members.setdefault((state.environment, state.app), []).append(state)
        # A group whose members are the very ones it had is kept, sums and lines: after a desired-state edit that
        # moves no target, a scrape writes again only what the passes changed (at 100,000 targets the first
        # scrape after an edit wrote every group again: 76 ms, against 30).
        old = self._groups
        self._groups = {
            key: kept if (kept := old.get(key)) is not None and _same(kept.members, group) else _Group(group)
            for key, group in sorted(members.items())
        }

    def update(self, name: str, **values: object) -> None:
        with self._lock:
            state = self._targets.get(name)
            if state is not None:  # else removed from the desired state meanwhile
                _set(state, values)

    def update_each(self, names: Iterable[str], **values: object) -> None:
        """update() of each of `names` with the same values, under one lock."""
        with self._lock:
            if _EVERY_PASS.issuperset(values):  # the last success alone: nothing to sum
                if (at := values.get("last_success")) is not None:
                    for name in names:
                        if (state := self._targets.get(name)) is not None:
                            _succeeded(state, at)
                return
            for name in names:
                if (state := self._targets.get(name)) is not None:
                    _set(state, values)

    def open_since(self, name: str) -> float | None:
        with self._lock:
            state = self._targets.get(name)
            return None if state is None else state.open_since

    def times(self, name: str) -> tuple[float, float]:
        """Since when the target has had drift that is not acceptable, and its last pass without error (Unix
        seconds, 0 for none), as the metrics export them; for the web UI's fleet page."""
        with self._lock:
            state = self._targets.get(name)
            return (0.0, 0.0) if state is None else (state.open_since, state.last_success)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            targets = list(self._targets.items())
        yield from _group_families([state for _, state in targets])
        if self.per_target:
            yield from _target_families(targets)

    def render(self) -> bytes:
        """What collect() gives, in the text format, written directly: a group's sums are kept as its members'
        passes land, and its lines from one scrape to the next while they hold; only the last success is taken
        from the members each time, with a C-level map. A scrape of 100,000 targets stays well under 200 ms,
        during a first cycle too (bench/metrics_render.py); per-target series, when asked for, go the general
        way."""
        with self._render_lock:
            with self._lock:
                groups = list(self._groups.items())
                moved = [(key, group, group.sums()) for key, group in groups if not _current(group)]
                targets = list(self._targets.items()) if self.per_target else []
            for key, group, (version, sums) in moved:
                group.heads = group.heads or _heads(key)
                group.kept = (version, _group_lines(group.heads, *sums))
            text = _render_groups(groups)
        return text + render_families(_target_families(targets)) if self.per_target else text


def _current(group: _Group) -> bool:
    return group.kept is not None and group.kept[0] == group.version


def _same(old: list[_Target] | None, new: list[_Target] | None) -> bool:
    return old is not None and new is not None and len(old) == len(new) and all(map(is_, old, new))


def _group_families(states: list[_Target]) -> tuple[GaugeMetricFamily, ...]:
    """The targets' last passes summed up by environment and app, groups in sorted order."""
    groups: dict[tuple[str, str], list[_Target]] = {}
    for state in states:
        groups.setdefault((state.environment, state.app), []).append(state)
    drift = GaugeMetricFamily(
        "reconciler_drift_items",
        "Drift items found by the targets' last passes, by environment, app and class.",
        labels=["environment", "app", "class"],
    )
    drifting = GaugeMetricFamily(
        "reconciler_targets_drifting",
        "Targets whose last pass found drift that is not acceptable.",
        labels=["environment", "app"],
    )
    pending = GaugeMetricFamily(
        "reconciler_escalations_pending",
        "Escalated drift waiting for a person's approval.",
        labels=["environment", "app"],
    )
    oldest_drift = GaugeMetricFamily(
        "reconciler_oldest_open_drift_timestamp_seconds",
        "Unix time since which the longest-drifting target of the group has had drift that is not "
        "acceptable (0: none drifts); time() minus this is the age of the oldest open drift.",
        labels=["environment", "app"],
    )
    oldest_success = GaugeMetricFamily(
        "reconciler_oldest_successful_pass_timestamp_seconds",
        "The stalest target's last pass that ended without error, as Unix time (0: a target has had none).",
        labels=["environment", "app"],
    )
    for (environment, app), members in sorted(groups.items()):
        for class_ in CLASSES:
            drift.add_metric([environment, app, class_], sum(m.drift[class_] for m in members))
        drifting.add_metric([environment, app], sum(1 for m in members if m.open_since))
        pending.add_metric([environment, app], sum(m.pending for m in members))
        opened = [m.open_since for m in members if m.open_since]
        oldest_drift.add_metric([environment, app], min(opened, default=0.0))
        oldest_success.add_metric([environment, app], min(m.last_success for m in members))
    return drift, drifting, pending, oldest_drift, oldest_success


_DRIFT = attrgetter("drift")
_OPEN = attrgetter("open_since")
_PENDING = attrgetter("pending")
_SUCCESS = attrgetter("last_success")


_HEADS = {family.name: family for family in _group_families([])}


def _heads(group: tuple[str, str]) -> tuple[str, ...]:
    """The start of each of a group's lines, up to its value, in _group_families' order (a drift line per class):
    written once per group, not at every scrape (a first cycle changes every group between two scrapes)."""
    env, app_ = escape_label(group[0]), escape_label(group[1])
    drift, *families = _HEADS
    where = f'app="{app_}",environment="{env}"'
    return (
        *(f'{drift}{{app="{app_}",class="{class_}",environment="{env}"}} ' for class_ in CLASSES),
        *(f"{name}{{{where}}} " for name in families),
    )


def _group_lines(
    heads: tuple[str, ...], totals: list[int], drifting: int, pending: int, oldest: float
) -> tuple[str, ...]:
    """A group's lines but the last success's, one per family of _group_families, from its sums."""
    classes = len(CLASSES)
    return (
        "".join(f"{head}{float(total)!r}\n" for head, total in zip(heads[:classes], totals, strict=True)),
        f"{heads[classes]}{float(drifting)!r}\n",
        f"{heads[classes + 1]}{float(pending)!r}\n",
        f"{heads[classes + 2]}{float(oldest)!r}\n",
    )


def _render_groups(groups: list[tuple[tuple[str, str], _Group]]) -> bytes:
    """The families of _group_families, in the same order, with the same samples, as text: each group's kept
    lines and its stalest member's last success."""
    lines: dict[str, list[str]] = {name: [] for name in _HEADS}
    *summed, oldest_success = _HEADS
    for _, group in groups:
        assert group.kept is not None  # render() wrote every group's lines that were not current
        for name, line in zip(summed, group.kept[1], strict=True):
            lines[name].append(line)
        lines[oldest_success].append(f"{group.heads[-1]}{float(min(group.successes))!r}\n")
    out: list[str] = []
    for name, family in _HEADS.items():
        out.append(f"# HELP {name} {escape_help(family.documentation)}\n# TYPE {name} {family.type}\n")
        out.extend(lines[name])
    return "".join(out).encode()


def _target_families(targets: list[tuple[str, _Target]]) -> tuple[GaugeMetricFamily, ...]:
    """Each target's last pass on its own, targets in sorted order (RECONCILER_METRICS__PER_TARGET)."""
    per_drift = GaugeMetricFamily(
        "reconciler_target_drift_items",
        "Drift items found by the target's last pass, by class (RECONCILER_METRICS__PER_TARGET).",
        labels=["target", "environment", "class"],
    )
    per_pending = GaugeMetricFamily(
        "reconciler_target_escalations_pending",
        "The target's escalated drift waiting for approval (RECONCILER_METRICS__PER_TARGET).",
        labels=["target", "environment"],
    )
    per_success = GaugeMetricFamily(
        "reconciler_target_last_successful_pass_timestamp_seconds",
        "Unix time of the target's last pass that ended without error (RECONCILER_METRICS__PER_TARGET).",
        labels=["target", "environment"],
    )
    per_open = GaugeMetricFamily(
        "reconciler_target_drift_open_since_timestamp_seconds",
        "Unix time since which the target has had drift that is not acceptable, 0 when none "
        "(RECONCILER_METRICS__PER_TARGET).",
        labels=["target", "environment"],
    )
    for name, state in sorted(targets):
        for class_ in CLASSES:
            per_drift.add_metric([name, state.environment, class_], state.drift[class_])
        per_pending.add_metric([name, state.environment], state.pending)
        per_success.add_metric([name, state.environment], state.last_success)
        per_open.add_metric([name, state.environment], state.open_since)
    return per_drift, per_pending, per_success, per_open


def render_families(families: Iterable[Metric]) -> bytes:
    """Gauge families in the text exposition format, written directly: prometheus_client's generic writer
    costs ~16 us per sample, this ~1 us, which is what keeps a scrape of a large fleet short."""
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {escape_help(family.documentation)}\n# TYPE {family.name} {family.type}\n")
        for sample in family.samples:
            labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(sample.labels.items()))
            out.append(f"{sample.name}{{{labels}}} {float(sample.value)!r}\n")  # counts and Unix times: finite
    return "".join(out).encode()


def escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
