"""What keeping environment parity costs the daemon: bench.daemon_scale's fleet (10,000 file targets of 100 keys,
0.1% of them changing per minute) in 2,500 apps of four environments, its steady-state CPU with parity off
(RECONCILER_PARITY__ENABLED=false, the baseline) and on, measured in the same run, one daemon after the other.

    .venv/bin/python -m bench.parity_daemon [--targets 10000] [--apps 2500] [--minutes 5]

Every target's values differ from its app's other targets', so every pair of an app differs at every key: each
changed file recomputes its pairs in full. Target: parity adds at most 10% to the steady-state CPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import daemon_scale


def measure(targets: int, keys: int, apps: int, minutes: float, enabled: bool) -> tuple[float, float, float]:
    """(steady-state CPU share of one core, peak RSS MB, first full cycle's CPU seconds) of one daemon."""
    folder = Path(tempfile.mkdtemp(prefix="reconciler-parity-"))
    live, desired = daemon_scale.build(folder, targets, keys, apps)
    extra = {"RECONCILER_PARITY__ENABLED": "true" if enabled else "false"}
    daemon, port = daemon_scale.start(folder, live, desired, extra)
    try:
        _, first_cpu, _ = daemon_scale.first_cycle(daemon, port, targets)
        _, window, peak, _ = daemon_scale.steady(daemon, port, live, targets, minutes, settle=1.0)
        if enabled:
            series = daemon_scale.metric(port, "reconciler_parity_unexpected_differences")
            print(f"  parity on: {series:,.0f} unexpected differing leaves in all, as exported")
    finally:
        daemon_scale.stop(daemon)
    return window.shares["daemon"], peak, first_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--apps", type=int, default=2_500)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    figures = {}
    for enabled in (False, True):
        share, peak, first = measure(args.targets, args.keys, args.apps, args.minutes, enabled)
        figures[enabled] = share
        state = "on " if enabled else "off"
        print(f"parity {state}: steady CPU {share * 100:6.2f}% of one core, peak RSS {peak:.0f} MB, ", end="")
        print(f"first cycle {first:.1f} s CPU")
    ratio = figures[True] / figures[False]
    print(f"parity on / off, steady-state CPU: {ratio:.3f}x (target <= 1.10x)")


if __name__ == "__main__":
    main()
