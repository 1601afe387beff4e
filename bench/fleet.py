"""The engine's cycle over a fleet: 10,000 targets x 100 keys, 0.1% of targets changed since the last cycle.

    .venv/bin/python -m bench.fleet [--targets 10000] [--keys 100] [--cycles 30]

One cycle is what a run over the fleet does (Reconciler.reconcile, Assessor.fingerprints/stale): take every
target's live bytes in one bulk read, fingerprint them, skip the targets whose fingerprint is the one of their
last good pass (checked for the whole batch at once), and parse, normalise, compare and classify the rest.
The same cycle with each target checked on its own (as a single-target pass does) is printed beside it.
The bytes come from an in-memory adapter, as a bulk read (one etcd transaction, one Redis MGET) or a watch
cache delivers them; reading 10,000 separate files costs more than the whole cycle by itself, and is printed
separately. The baseline, measured in the same run, is the same cycle with no skipping (every target
parsed, compared and classified).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.domain import fingerprint
from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.observed import Observed
from reconciler.domain.policy import Policy
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.engine.assess import Assessor
from reconciler.ports import Capabilities

NOW = datetime(2026, 11, 22, tzinfo=UTC)


class MemoryAdapter:
    """Live documents held as bytes, as a bulk read delivers them."""

    capabilities = Capabilities(read=True)

    def __init__(self) -> None:
        self.raw: dict[str, bytes] = {}

    def discover(self, target: Target) -> Observed:
        data = self.raw[target.name]
        return Observed(fingerprint.of_bytes(data), target.name, parse=lambda: json.loads(data))

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        of_bytes, raw = fingerprint.of_bytes, self.raw
        return {name: of_bytes(raw[name]) for name in targets}

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return desired


def fleet(targets: int, keys: int) -> tuple[DesiredState, MemoryAdapter]:
    rng = random.Random(7)
    adapter = MemoryAdapter()
    models: dict[str, Target] = {}
    for i in range(targets):
        desired = {f"key_{k}": (k * i if k % 3 else f"v{k}") for k in range(keys)}
        live = dict(desired)
        if rng.random() < 0.05:  # a few targets carry drift all the time
            live["key_1"] = "drifted"
        name = f"svc-{i}"
        models[name] = Target.model_validate(
            {
                "kind": "Target",
                "metadata": {"name": name, "environment": ("dev", "staging", "prod")[i % 3], "labels": {"team": "t"}},
                "spec": {"source": {"adapter": "memory"}, "desired": desired, "ignore": ["/metadata/**"]},
            }
        )
        adapter.raw[name] = json.dumps(live).encode()
    policy = Policy.model_validate(
        {
            "kind": "Policy",
            "metadata": {"name": "p"},
            "spec": {
                "default": "reversible",
                "rules": [{"match": {"environment": "prod", "paths": ["/key_1*"]}, "class": "escalate", "reason": "r"}],
                "exceptions": [
                    {"targets": ["svc-1*"], "paths": ["/key_2"], "reason": "r", "owner": "o", "expires": "2027-01-01"}
                ],
            },
        }
    )
    state = DesiredState(Path("."), DesiredVersion("f" * 64), models, (policy,))
    return state, adapter


def cycle(state: DesiredState, adapter: MemoryAdapter, assessor: Assessor, how: str) -> int:
    """One cycle; returns how many targets were parsed, compared and classified.

    bulk: the engine's cycle over a fleet (what a run does first): one bulk read of fingerprints checked
          against the remembered ones, then only the stale targets are assessed in full.
    each: every target assessed on its own (its own read and Observed), unchanged ones from the memo: what a
          single-target pass does.
    full: the baseline; a fresh Assessor, so every target is parsed, compared and classified."""
    if how == "bulk":
        seen = assessor.fingerprints(adapter, state.targets)
        stale = assessor.stale(state, state.targets, seen, Mode.DRY_RUN, NOW)
        for name in stale:
            assessor.remember(name, assessor.assess(state, state.targets[name], adapter, Mode.DRY_RUN, NOW))
        return len(stale)
    compared = 0
    for name, target in state.targets.items():
        assessment = assessor.assess(state, target, adapter, Mode.DRY_RUN, NOW)
        if not assessment.unchanged:
            compared += 1
            assessor.remember(name, assessment)
    return compared


def change_some(state: DesiredState, adapter: MemoryAdapter, fraction: float, rng: random.Random) -> None:
    for name in rng.sample(sorted(state.targets), max(1, int(len(state.targets) * fraction))):
        doc = json.loads(adapter.raw[name])
        doc["key_5"] = rng.randint(0, 10**9)
        adapter.raw[name] = json.dumps(doc).encode()


def read_files(adapter: MemoryAdapter) -> float:
    """Seconds to read every target's bytes from its own file (page cache warm)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, data in adapter.raw.items():
            path = os.path.join(folder, name + ".json")
            with open(path, "wb") as handle:
                handle.write(data)
            paths.append(path)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for path in paths:
                with open(path, "rb") as handle:
                    handle.read()
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=30)
    args = parser.parse_args()
    state, adapter = fleet(args.targets, args.keys)
    rng = random.Random(11)
    bulk, each = Assessor(b"k"), Assessor(b"k")
    cycle(state, adapter, bulk, "bulk")  # the first cycle looks at everything
    cycle(state, adapter, each, "each")
    times: dict[str, list[float]] = {"bulk": [], "each": [], "full": []}
    compared = []
    for _ in range(args.cycles):
        change_some(state, adapter, 0.001, rng)
        for how, assessor in (("bulk", bulk), ("each", each), ("full", Assessor(b"k"))):
            start = time.perf_counter()
            count = cycle(state, adapter, assessor, how)
            times[how].append(time.perf_counter() - start)
            if how == "bulk":
                compared.append(count)
    ours, single, base = (statistics.median(times[h]) for h in ("bulk", "each", "full"))
    print(f"fleet: {args.targets} targets x {args.keys} keys, 0.1% changed per cycle, {args.cycles} cycles")
    p90 = statistics.quantiles(times["bulk"], n=10)[-1]
    print(
        f"engine cycle (bulk read, skip unchanged): median {ours * 1000:.1f} ms (p90 {p90 * 1000:.1f} ms), "
        f"{statistics.median(compared):.0f} targets compared per cycle"
    )
    print(f"each target on its own, unchanged from memo: median {single * 1000:.1f} ms; ratio {ours / single:.2f}")
    print(
        f"baseline, every target compared: median {base * 1000:.1f} ms; "
        f"ratio {ours / base:.3f} ({base / ours:.0f}x faster)"
    )
    print(f"for scale: reading {args.targets} separate files takes {read_files(adapter) * 1000:.1f} ms here")


if __name__ == "__main__":
    main()
