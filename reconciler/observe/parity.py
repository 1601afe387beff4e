"""The daemon's environment parity as Prometheus series: per app and compared environment, the unexpected
differing leaves against the app's baseline, the drift percentage, and the differing leaves that allowlist
entries cover by the entry's state. Kept in plain dicts and written at scrape time (see metrics.py for why)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

    def sync(self, apps: Mapping[str, Sequence[str]]) -> None:
        """The apps of the desired state, each with the environments compared with its baseline; the series of
        others are dropped, and new ones start at zero."""
        with self._lock:
            kept: dict[str, dict[str, EnvironmentParity]] = {}
            for app, environments in apps.items():
                old = self._apps.get(app, {})
                kept[app] = {e: old.get(e) or EnvironmentParity() for e in environments}
            self._apps = kept

    def set(self, app: str, environment: str, value: EnvironmentParity) -> None:
        with self._lock:
            known = self._apps.get(app)
            if known is not None and environment in known:
                known[environment] = value

    def get(self, app: str, environment: str) -> EnvironmentParity | None:
        with self._lock:
            return self._apps.get(app, {}).get(environment)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            apps = {app: dict(envs) for app, envs in self._apps.items()}
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
        yield from (unexpected, drift, expected)
