"""The daemon's environment parity as Prometheus series: per app and compared environment, the unexpected
differing leaves against the app's baseline, the drift percentage, and the differing leaves that allowlist
entries cover by the entry's state. Kept in plain dicts and written at scrape time (see metrics.py for why)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.observe.targets import escape_help, escape_label

ENTRY_STATES = ("active", "expiring", "expired")


@dataclass(slots=True)
class EnvironmentParity:
    """One environment of one app, against the app's baseline."""

    unexpected: int = 0  # differing leaves no active allowlist entry covers
    drift_percent: float = 0.0
    expected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENTRY_STATES, 0))


class ParityStates(Collector):
    """Each app's parity by environment; every series exists (at zero) from the moment its app is loaded."""

    def __init__(self) -> None:
        self._apps: dict[str, dict[str, EnvironmentParity]] = {}
        self._lock = threading.Lock()
        self._changes = 0  # series changed so far
        self._text: tuple[int, bytes] | None = None  # render()'s text, and the changes it holds
        self._order: list[tuple[str, str, _Labels]] = []  # (app, environment, its lines' heads), in render order

    def sync(self, apps: Mapping[str, Sequence[str]]) -> None:
        """The apps of the desired state, each with the environments compared with its baseline; the series of
        others are dropped, and new ones start at zero."""
        with self._lock:
            kept: dict[str, dict[str, EnvironmentParity]] = {}
            for app, environments in apps.items():
                old = self._apps.get(app, {})
                kept[app] = {e: old.get(e) or EnvironmentParity() for e in environments}
            self._apps = kept
            self._order = [(a, e, _labels(a, e)) for a in sorted(kept) for e in sorted(kept[a])]
            self._changes += 1

    def set(self, app: str, environment: str, value: EnvironmentParity) -> None:
        with self._lock:
            known = self._apps.get(app)
            if known is not None and environment in known and known[environment] != value:
                known[environment] = value
                self._changes += 1

    def get(self, app: str, environment: str) -> EnvironmentParity | None:
        with self._lock:
            return self._apps.get(app, {}).get(environment)

    def render(self) -> bytes:
        """collect() as exposition text, kept until a series changes: parity moves only when a document does,
        and a scrape of 500 apps in four environments wrote the same 7,500 series each time (half of a
        scrape's CPU at 20,000 targets)."""
        with self._lock:
            if self._text is not None and self._text[0] == self._changes:
                return self._text[1]
            changes, apps, order = self._changes, self._snapshot(), self._order
        text = _render(apps, order)
        with self._lock:
            if self._changes == changes:  # none since the snapshot: the text stands for what is kept now
                self._text = (changes, text)
        return text

    def _snapshot(self) -> dict[str, dict[str, EnvironmentParity]]:
        return {app: dict(envs) for app, envs in self._apps.items()}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            apps = self._snapshot()
        yield from _families(apps)


_Labels = tuple[str, str, tuple[str, ...]]  # the heads of an environment's lines: unexpected, drift, expected


def _labels(app: str, environment: str) -> _Labels:
    """The start of each line of one app's environment, up to its value, as render_families writes it."""
    unexpected, drift, expected = _HEADS
    where = f'app="{escape_label(app)}",environment="{escape_label(environment)}"'
    return (
        f"{unexpected}{{{where}}} ",
        f"{drift}{{{where}}} ",
        tuple(f'{expected}{{{where},state="{state}"}} ' for state in ENTRY_STATES),
    )


def _render(apps: Mapping[str, Mapping[str, EnvironmentParity]], order: list[tuple[str, str, _Labels]]) -> bytes:
    """What render_families(_families(apps)) writes, from the lines' heads made when the apps were synced: a first
    cycle changes most apps between two scrapes, and writing each label set again was 17 ms of every scrape at
    500 apps in four environments."""
    unexpected: list[str] = []
    drift: list[str] = []
    expected: list[str] = []
    for app, environment, (u, d, e) in order:
        value = apps[app][environment]
        unexpected.append(f"{u}{float(value.unexpected)!r}\n")
        drift.append(f"{d}{float(value.drift_percent)!r}\n")
        expected.extend(
            f"{head}{float(value.expected[state])!r}\n" for head, state in zip(e, ENTRY_STATES, strict=True)
        )
    heads = [f"# HELP {f.name} {escape_help(f.documentation)}\n# TYPE {f.name} {f.type}\n" for f in _HEADS.values()]
    return "".join([heads[0], *unexpected, heads[1], *drift, heads[2], *expected]).encode()


def _families(apps: Mapping[str, Mapping[str, EnvironmentParity]]) -> tuple[Metric, ...]:
    """The three parity families of `apps` (a snapshot)."""
    unexpected = GaugeMetricFamily(
        "reconciler_parity_unexpected_differences",
        "Leaf paths where the environment differs from its app's baseline and no active allowlist entry "
        "(expected_differences) lets it.",
        labels=["app", "environment"],
    )
    drift = GaugeMetricFamily(
        "reconciler_parity_drift_percent",
        "Unexpected differing leaves against the app's baseline over the union of their leaf paths, x 100.",
        labels=["app", "environment"],
    )
    expected = GaugeMetricFamily(
        "reconciler_parity_expected_differences",
        "Differing leaf paths against the app's baseline that an allowlist entry covers, by the entry's "
        "state: active, expiring (within the warning horizon) or expired (they count as unexpected again).",
        labels=["app", "environment", "state"],
    )
    for app, envs in sorted(apps.items()):
        for environment, value in sorted(envs.items()):
            unexpected.add_metric([app, environment], value.unexpected)
            drift.add_metric([app, environment], value.drift_percent)
            for state in ENTRY_STATES:
                expected.add_metric([app, environment, state], value.expected[state])
    return (unexpected, drift, expected)


_HEADS = {family.name: family for family in _families({})}
