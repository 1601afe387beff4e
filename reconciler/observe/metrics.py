"""Every Prometheus collector reconciler exports, in one registry, initialised to zero at start-up.

Labels are bounded: target, environment, class, result, outcome, adapter — never a path or a value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PASS_RESULTS = ("clean", "drift", "fixed", "failed", "unchanged")
ACTION_OUTCOMES = ("verified", "noop", "conflict", "failed", "rolled_back", "dry_run", "interrupted")
CLASSES = ("acceptable", "reversible", "escalate")


class Metrics:
    """The collectors of one process (a fresh registry each, so tests do not share series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes = Counter(
            "reconciler_passes_total",
            "Reconcile passes by environment and result.",
            ["environment", "result"],
            registry=r,
        )
        self.pass_duration = Histogram(
            "reconciler_pass_duration_seconds",
            "Duration of one target's pass.",
            ["environment"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.drift_items = Gauge(
            "reconciler_drift_items",
            "Drift items found by the target's last pass, by class.",
            ["target", "environment", "class"],
            registry=r,
        )
        self.actions = Counter(
            "reconciler_actions_total",
            "Actions by final outcome.",
            ["environment", "outcome"],
            registry=r,
        )
        self.escalations_pending = Gauge(
            "reconciler_escalations_pending",
            "Escalated drift waiting for a person's approval.",
            ["target", "environment"],
            registry=r,
        )
        self.last_success = Gauge(
            "reconciler_last_successful_pass_timestamp_seconds",
            "Unix time of the target's last pass that ended without error.",
            ["target", "environment"],
            registry=r,
        )
        self.adapter_errors = Counter(
            "reconciler_adapter_errors_total",
            "Errors reading or writing live systems.",
            ["adapter", "environment"],
            registry=r,
        )
        self.adapter_retries = Counter(
            "reconciler_adapter_retries_total",
            "Adapter reads and stages tried again after a temporary error.",
            ["adapter"],
            registry=r,
        )
        self.desired_reload_errors = Counter(
            "reconciler_desired_reload_errors_total",
            "Edits of the desired state refused as invalid (the last good version stays in force).",
            registry=r,
        )
        self.desired_info = Gauge(
            "reconciler_desired_version_info",
            "The desired-state version in force (value 1).",
            ["digest", "git_commit"],
            registry=r,
        )
        self.flapping = Counter(
            "reconciler_flapping_total",
            "Drift that was escalated instead of fixed again, because another writer kept changing it back.",
            ["environment"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "reconciler_circuit_open", "1 while the circuit breaker holds all remediation in dry-run.", registry=r
        )
        self.circuit_opened = Counter(
            "reconciler_circuit_opened_total", "Times the error budget opened the circuit breaker.", registry=r
        )
        self.waves_stopped = Counter(
            "reconciler_waves_stopped_total",
            "Runs whose later waves were held in dry-run because a wave in this environment failed.",
            ["environment"],
            registry=r,
        )
        self.targets = Gauge("reconciler_targets", "Targets in the desired state.", ["environment"], registry=r)
        self.exceptions = Gauge(
            "reconciler_exceptions",
            "Policy exceptions by state: active, expiring (within the warning horizon) or expired.",
            ["state"],
            registry=r,
        )
        for state in ("active", "expiring", "expired"):
            self.exceptions.labels(state)
        self._desired_labels: tuple[str, str] | None = None

    def init_targets(self, targets: Iterable[tuple[str, str]]) -> None:
        """Create every series at zero so dashboards and alerts see them from the first scrape."""
        environments: dict[str, int] = {}
        for name, environment in targets:
            environments[environment] = environments.get(environment, 0) + 1
            for class_ in CLASSES:
                self.drift_items.labels(name, environment, class_)
            self.last_success.labels(name, environment)
            self.escalations_pending.labels(name, environment)
        for environment, count in environments.items():
            self.targets.labels(environment).set(count)
            self.pass_duration.labels(environment)
            for result in PASS_RESULTS:
                self.passes.labels(environment, result)
            for outcome in ACTION_OUTCOMES:
                self.actions.labels(environment, outcome)
            self.waves_stopped.labels(environment)
            self.flapping.labels(environment)

    def forget_target(self, name: str, environment: str) -> None:
        """Drop a removed target's series, so it does not look stuck forever."""
        for class_ in CLASSES:
            with contextlib.suppress(KeyError):
                self.drift_items.remove(name, environment, class_)
        for gauge in (self.last_success, self.escalations_pending):
            with contextlib.suppress(KeyError):
                gauge.remove(name, environment)

    def set_desired_version(self, digest: str, git_commit: str | None) -> None:
        labels = (digest[:12], (git_commit or "")[:12])
        if self._desired_labels == labels:
            return
        if self._desired_labels is not None:
            self.desired_info.remove(*self._desired_labels)
        self.desired_info.labels(*labels).set(1)
        self._desired_labels = labels

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
