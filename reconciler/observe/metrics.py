"""Every Prometheus collector reconciler exports, in one registry, initialised to zero at start-up.

Labels are bounded: environment, app, class, result, outcome, adapter — never a path or a value. What each
target's last pass found is kept in plain dicts and exported aggregated by environment and app, computed at
scrape time; the same per target (a `target` label, under `reconciler_target_*` names) only when asked for
(RECONCILER_METRICS__PER_TARGET), because prometheus_client spends ~16 µs per series while it holds the
interpreter lock, and 10,000 targets x 6 series would stall the daemon for a second at every scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from reconciler.observe.parity import ParityStates
from reconciler.observe.targets import TargetStates

PASS_RESULTS = ("clean", "drift", "fixed", "failed", "unchanged")
ACTION_OUTCOMES = ("verified", "noop", "conflict", "failed", "rolled_back", "dry_run", "interrupted")


class _Union(Collector):
    """The standard collectors and the plain-dict ones, as one registry sees them (for inspection and tests)."""

    def __init__(self, standard: CollectorRegistry, *states: Collector) -> None:
        self._standard, self._states = standard, states

    def collect(self) -> Iterator[Metric]:
        yield from self._standard.collect()
        for states in self._states:
            yield from states.collect()


class _GcFigures(Collector):
    """The garbage collector's policy, as /metrics shows it (docs/operations.md, "Large fleets")."""

    HELP = {
        "full_collections": "Full collections of the cyclic garbage collector (every thread waits for each).",
        "full_collection_seconds": "Time spent in full collections: every thread waited this long.",
        "longest_full_collection_seconds": "The longest full collection.",
        "freezes": "Long full collections after which the survivors were left out of later ones.",
        "thaws": "Times the objects left out were all walked again (their garbage cycles freed).",
    }

    def __init__(self, figures: Callable[[], Mapping[str, float]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        for name, value in self._figures().items():
            family = GaugeMetricFamily if name.startswith("longest") else CounterMetricFamily
            metric = family(f"reconciler_gc_{name}", self.HELP[name])
            metric.add_metric([], value)
            yield metric


class Metrics:
    """The collectors of one process (fresh registries each, so tests do not share series).

    `registry` shows everything (get_sample_value in tests); render() writes the standard collectors with
    prometheus_client and the per-target aggregates with render_families, which is the same format, faster.
    """

    def __init__(self, per_target: bool = False) -> None:
        self._standard = CollectorRegistry(auto_describe=True)
        self.target_states = TargetStates(per_target)
        self.registry = CollectorRegistry(auto_describe=False)
        self.parity = ParityStates()  # environment parity (observe/parity.py): empty unless the daemon keeps it
        self.registry.register(_Union(self._standard, self.target_states, self.parity))
        # In this order: /metrics lists the standard collectors in the order they were registered.
        self._register_pass_collectors()
        self._register_adapter_collectors()
        self._register_desired_collectors()
        self._register_safety_collectors()
        self._register_fleet_collectors()
        self._register_watch_collectors()
        self._register_exception_collectors()
        self._desired_labels: tuple[str, str] | None = None
        self._environments: set[str] = set()
        # (environment, result) -> the pass counter's and duration histogram's children: labels() costs
        # more than the increment itself, and every pass (10,000 targets: 170 a second) records both.
        self._pass_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def _register_pass_collectors(self) -> None:
        """What passes did: how many ended how, how long they took, and their actions' outcomes."""
        r = self._standard
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
        self.actions = Counter(
            "reconciler_actions_total",
            "Actions by final outcome.",
            ["environment", "outcome"],
            registry=r,
        )

    def _register_adapter_collectors(self) -> None:
        """How reading and writing live systems went."""
        r = self._standard
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

    def _register_desired_collectors(self) -> None:
        """The desired state in force, and edits of it that were refused."""
        r = self._standard
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

    def _register_safety_collectors(self) -> None:
        """What held writes back: flapping drift, the circuit breaker, blast radius and rollout waves."""
        r = self._standard
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
        self.blast_radius = Counter(
            "reconciler_blast_radius_refusals_total",
            "Passes that had writes to make and ran dry-run because a blast-radius limit (of a run, or of the "
            "daemon's rolling window) was reached, by environment.",
            ["environment"],
            registry=r,
        )
        self.waves_held = Gauge(
            "reconciler_rollout_waves_held",
            "1 while a failed write holds the later waves of the desired version in force, until it is released.",
            registry=r,
        )
        self.rollout_holds = Counter(
            "reconciler_rollout_holds_total",
            "Desired-version rollouts whose later waves a failed write in this environment held.",
            ["environment"],
            registry=r,
        )

    def _register_fleet_collectors(self) -> None:
        """The targets, the replicas sharing them, this replica's share, and its workers."""
        r = self._standard
        self.worker_crashes = Counter(
            "reconciler_worker_crashes_total",
            "Daemon workers that crashed on a bug and started again (the pass they held is retried).",
            registry=r,
        )
        self.targets = Gauge("reconciler_targets", "Targets in the desired state.", ["environment"], registry=r)
        self.replicas = Gauge(
            "reconciler_replicas", "Daemons sharing the targets on this database (1 on SQLite).", registry=r
        )
        self.leased_targets = Gauge(
            "reconciler_leased_targets", "Targets this replica holds the lease of (all of them on SQLite).", registry=r
        )
        self.history_backlog = Gauge(
            "reconciler_history_backlog",
            "Passes kept in memory while the history store is unreachable, written when it is back.",
            registry=r,
        )
        self.history_dropped = Counter(
            "reconciler_history_backlog_dropped_total",
            "Passes whose history was lost because the backlog was full during a store outage.",
            registry=r,
        )

    def _register_watch_collectors(self) -> None:
        """Watches of live systems: what they cover, what they saw, how fast it was recorded."""
        r = self._standard
        self.watches = Gauge(
            "reconciler_watches",
            "Targets an established watch covers, by adapter (0 until it is up and while it is re-established).",
            ["adapter"],
            registry=r,
        )
        self.watch_events = Counter(
            "reconciler_watch_events_total", "Changes watches reported, by adapter.", ["adapter"], registry=r
        )
        self.watch_errors = Counter(
            "reconciler_watch_errors_total",
            "Watches that broke and were re-established with backoff, by adapter.",
            ["adapter"],
            registry=r,
        )
        self.detection_latency = Histogram(
            "reconciler_detection_latency_seconds",
            "From a watched change to the end of the pass that recorded it, by adapter.",
            ["adapter"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )

    def _register_exception_collectors(self) -> None:
        """Policy exceptions and expected differences by state, every state at zero from the start."""
        r = self._standard
        self.exceptions = Gauge(
            "reconciler_exceptions",
            "Policy exceptions and expected differences by state: active, expiring (within the warning horizon) "
            "or expired.",
            ["state"],
            registry=r,
        )
        for state in ("active", "expiring", "expired"):
            self.exceptions.labels(state)

    def pass_done(self, environment: str, result: str, duration_s: float) -> None:
        """Count a pass of a target of `environment` that ended with `result`, and observe its duration."""
        children = self._pass_children.get((environment, result))
        if children is None:
            children = (self.passes.labels(environment, result), self.pass_duration.labels(environment))
            self._pass_children[(environment, result)] = children
        children[0].inc()
        children[1].observe(duration_s)

    def passes_done(self, environment: str, result: str, duration_s: float, count: int) -> None:
        """pass_done() of `count` passes of `environment` that each took `duration_s`, at once: a batch's
        unchanged passes (at 100,000 targets, a counter and a histogram touched per pass cost more than a
        tenth of such a pass)."""
        children = self._pass_children.get((environment, result))
        if children is None:
            children = (self.passes.labels(environment, result), self.pass_duration.labels(environment))
            self._pass_children[(environment, result)] = children
        children[0].inc(count)
        _observe_many(children[1], duration_s, count)

    def init_targets(self, targets: Iterable[tuple[str, str, str]], adapters: Iterable[tuple[str, str]] = ()) -> None:
        """The desired state's targets, (name, environment, app), and the (adapter, environment) pairs they
        use: their series start at zero, and every per-environment and per-adapter series exists from the first
        scrape, so dashboards and alerts see them."""
        for adapter, environment in adapters:
            self.adapter_errors.labels(adapter, environment)
            self.watches.labels(adapter)
            self.watch_events.labels(adapter)
            self.watch_errors.labels(adapter)
            self.detection_latency.labels(adapter)
        targets = list(targets)
        self.target_states.sync(targets)
        environments: dict[str, int] = {}
        for _, environment, _ in targets:
            environments[environment] = environments.get(environment, 0) + 1
        for environment in list(self._environments - set(environments)):
            self.targets.labels(environment).set(0)
        self._environments = set(environments)
        for environment, count in environments.items():
            self.targets.labels(environment).set(count)
            self.pass_duration.labels(environment)
            for result in PASS_RESULTS:
                self.passes.labels(environment, result)
            for outcome in ACTION_OUTCOMES:
                self.actions.labels(environment, outcome)
            self.waves_stopped.labels(environment)
            self.flapping.labels(environment)
            self.blast_radius.labels(environment)
            self.rollout_holds.labels(environment)

    def set_desired_version(self, digest: str, git_commit: str | None) -> None:
        labels = (digest[:12], (git_commit or "")[:12])
        if self._desired_labels == labels:
            return
        if self._desired_labels is not None:
            self.desired_info.remove(*self._desired_labels)
        self.desired_info.labels(*labels).set(1)
        self._desired_labels = labels

    def export_gc(self, figures: Callable[[], Mapping[str, float]]) -> None:
        """Export what the garbage collector's policy did (runtime/heap.py's figures), read at each scrape."""
        self._standard.register(_GcFigures(figures))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return (
            generate_latest(self._standard) + self.target_states.render() + self.parity.render(),
            CONTENT_TYPE_LATEST,
        )


def _observe_many(histogram: Any, amount: float, count: int) -> None:
    """What `count` calls of histogram.observe(amount) record, at once: prometheus_client's histogram child keeps
    a sum and a count per bucket (made cumulative when exposed); tests/observe/test_metrics.py pins the two."""
    histogram._sum.inc(amount * count)
    for index, bound in enumerate(histogram._upper_bounds):
        if amount <= bound:
            histogram._buckets[index].inc(count)
            break
