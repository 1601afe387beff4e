"""How long a scrape of /metrics takes with 10,000 targets.

    .venv/bin/python -m bench.metrics_render [--targets 10000] [--apps 500] [--renders 20]

It builds the daemon's Metrics for a fleet spread over four environments and a few hundred apps, sets every
target's last pass (some with drift, escalations and failures), fills the per-environment counters and
histograms as passes would, sets each app's environment parity against dev, and times Metrics.render(), which
is what the daemon's /metrics handler does: in a steady state, and in a first cycle, where an eighth of the
fleet's passes land between two scrapes and change the parity of the apps they touch (only the renders are
timed).
The baseline, measured in the same run, is what a straightforward exporter does: six series per target
(RECONCILER_METRICS__PER_TARGET=true) all written by prometheus_client's own generate_latest.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from prometheus_client import generate_latest

from reconciler.observe.metrics import Metrics
from reconciler.observe.parity import EnvironmentParity

ENVIRONMENTS = ("dev", "staging", "prod", "prod-eu")


def fleet(metrics: Metrics, targets: int, apps: int) -> None:
    rng = random.Random(7)
    # Every app in every environment: 10,000 targets are 500 apps x 4 environments x 5 targets each.
    names = [(f"t{i:05}", ENVIRONMENTS[i % len(ENVIRONMENTS)], f"app{(i // 4) % apps:03}") for i in range(targets)]
    metrics.init_targets(names)
    now = time.time()
    for name, environment, _ in names:
        drifting = rng.random() < 0.05
        metrics.target_states.update(
            name,
            drift={"acceptable": rng.randint(0, 2), "reversible": int(drifting), "escalate": int(rng.random() < 0.01)},
            pending=int(rng.random() < 0.01),
            last_success=now - rng.uniform(0, 60),
            open_since=now - rng.uniform(0, 3600) if drifting else 0.0,
        )
        metrics.passes.labels(environment, "clean").inc()
        metrics.pass_duration.labels(environment).observe(rng.uniform(0.001, 0.05))
    metrics.parity.sync({f"app{a:03}": ENVIRONMENTS[1:] for a in range(min(apps, targets))})
    for _, environment, app in names:
        if environment != ENVIRONMENTS[0]:
            metrics.parity.set(app, environment, parity_of(rng))


def parity_of(rng: random.Random) -> EnvironmentParity:
    """An environment's parity against the baseline, some leaves differing, some of them allowlisted."""
    unexpected = rng.randint(0, 3)
    value = EnvironmentParity(unexpected, float(unexpected))  # of 100 leaves: as many percent
    value.expected["active"] = rng.randint(0, 2)
    return value


def first_cycle_slice(metrics: Metrics, targets: int, apps: int, rng: random.Random) -> None:
    """What a first cycle's passes do between two scrapes 15 s apart (an eighth of the fleet at 120 s a cycle):
    their drift, escalations and open drift set, and their apps' parity, so every group has changed by the next
    scrape."""
    now = time.time()
    for i in rng.sample(range(targets), targets // 8):
        drifting = rng.random() < 0.05
        metrics.target_states.update(
            f"t{i:05}",
            drift={"acceptable": rng.randint(0, 2), "reversible": int(drifting), "escalate": 0},
            pending=int(rng.random() < 0.01),
            open_since=now if drifting else 0.0,
        )
        metrics.target_states.update(f"t{i:05}", last_success=now)
        environment = ENVIRONMENTS[i % len(ENVIRONMENTS)]
        if environment != ENVIRONMENTS[0]:
            metrics.parity.set(f"app{(i // 4) % apps:03}", environment, parity_of(rng))


def timed(metrics: Metrics, renders: int, naive: bool, churn: int = 0, apps: int = 500) -> tuple[float, int, int]:
    """The median render; with `churn` (the fleet's size), each render after a first cycle's slice of passes."""
    samples = []
    body = b""
    rng = random.Random(5)
    for _ in range(renders):
        if churn:
            first_cycle_slice(metrics, churn, apps, rng)
        started = time.perf_counter()
        body = generate_latest(metrics.registry) if naive else metrics.render()[0]
        samples.append(time.perf_counter() - started)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return statistics.median(samples), series, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()
    results = {}
    runs = (
        ("aggregated (default)", False, False, 0),
        ("aggregated, in a first cycle", False, False, args.targets),
        ("per-target on (opt-in)", True, False, 0),
        ("baseline: per-target series", True, True, 0),
    )
    for label, per_target, naive, churn in runs:
        metrics = Metrics(per_target=per_target)
        fleet(metrics, args.targets, args.apps)
        results[label] = timed(metrics, args.renders, naive, churn, args.apps)
    base = results["baseline: per-target series"][0]
    print(f"/metrics render, {args.targets:,} targets, {args.apps} apps x {len(ENVIRONMENTS)} environments")
    print(f"{'':30} {'median':>10} {'series':>8} {'bytes':>10} {'vs baseline':>12}")
    for label, (median, series, size) in results.items():
        print(f"{label:30} {median * 1000:8.1f}ms {series:8,} {size:10,} {median / base:11.2f}x")


if __name__ == "__main__":
    main()
