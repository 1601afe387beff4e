"""The probes' answers while the daemon is busiest: its first full cycle, and desired-state edits that touch 1% of
the targets each, with /readyz asked every 50 ms and /metrics every second (a Kubernetes probe and an eager
scraper, each on its own thread).

    .venv/bin/python -m bench.probe_stress [--targets 100000] [--keys 100] [--edits 4] [--readyz-ms 50]
                                           [--metrics-ms 1000] [--apps 500] [--folder DIR]

The daemon and the fleet are bench.daemon_scale's (a real `reconciler run` in dry-run on SQLite, file targets,
5% standing drift). For each phase the bench prints every path's median, 99th percentile and slowest answer,
and how many took longer than the 200 ms of issue 17. The first cycle's phase starts once /readyz says the
desired state is loaded (before that the daemon only loads it). Each edit changes one manifest file in a
hundred, other files each time, and lasts until each edited target has had its full pass; a pause of 10 s
follows it, probed too, as the baseline of the same run: the same daemon with nothing but its steady passes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.daemon_scale import Prober, edit_desired, first_cycle, fleet_folder, start, stop

LIMIT_S = 0.2  # issue 17: /metrics and /readyz answer within 200 ms throughout


def phase(name: str, prober: Prober) -> str:
    """One line per path: its answers' median, 99th percentile, slowest, and how many were past LIMIT_S."""
    lines = [f"{name}:"]
    for path, answers in prober.answers.items():
        if not answers:
            lines.append(f"  {path:9} no answers ({prober.unanswered[path]} unanswered)")
            continue
        ordered = sorted(answers)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        past = sum(1 for seconds in ordered if seconds > LIMIT_S)
        lines.append(
            f"  {path:9} {len(ordered):5} answers: median {statistics.median(ordered) * 1000:4.0f} ms, "
            f"p99 {p99 * 1000:4.0f} ms, slowest {ordered[-1] * 1000:4.0f} ms; {past} past {LIMIT_S * 1000:.0f} ms, "
            f"{prober.unanswered[path]} unanswered"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--edits", type=int, default=4, help="desired-state edits of 1%% of the targets each")
    parser.add_argument("--readyz-ms", type=float, default=50.0)
    parser.add_argument("--metrics-ms", type=float, default=1000.0)
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--folder", type=Path, help="build the fleet here, or take the one built here before")
    args = parser.parse_args()
    if not 0 <= args.edits <= 100 or args.readyz_ms <= 0 or args.metrics_ms <= 0 or args.targets < 100:
        parser.error("--edits must be 0-100, the periods above 0, --targets at least 100")
    folder = fleet_folder(args.folder, args.targets, args.keys, args.apps)
    live, desired = folder / "live", folder / "desired"
    daemon, port = start(folder, live, desired)
    every = {"/readyz": args.readyz_ms / 1000, "/metrics": args.metrics_ms / 1000}
    try:
        with Prober(port, every) as prober:
            wall, _, loaded = first_cycle(daemon, port, args.targets, on_loaded=prober.reset)
            print(
                f"first full cycle of {args.targets:,} targets: {wall:.0f} s, the desired state loaded at "
                f"{loaded[0] if loaded else float('nan'):.0f} s"
            )
            print(phase("  the first cycle after the load", prober))
            prober.reset()
            time.sleep(10)
            for edit in range(args.edits):
                print(phase(f"  10 s of steady passes before edit {edit + 1} (baseline)", prober))
                prober.reset()
                seconds, _, full, edited, _ = edit_desired(daemon, port, desired, offset=edit)
                print(
                    f"edit {edit + 1}: {edited:,} targets' desired state, all passed in {seconds:.1f} s "
                    f"({full:,.0f} full passes)"
                )
                print(phase(f"  edit {edit + 1}", prober))
                prober.reset()
                time.sleep(10)
    finally:
        stop(daemon)


if __name__ == "__main__":
    main()
