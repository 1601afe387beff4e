"""The daemon's passes in-process, where a whole daemon's noise would hide a few microseconds a target: the
fleet of bench.daemon_scale (file targets of 100 keys, 60 s interval, 5% with standing drift), loaded and
passed by the real daemon's components (`compose.build(daemon=True)`, `Daemon`, its workers' batches), on
SQLite, dry-run, with no thread but the caller's.

    .venv/bin/python -m bench.steady_passes [--targets 20000] [--rounds 5] [--tree PATH ...] [--profile [first]]
                                           [--memory]

Measured, in CPU seconds of the process (time.process_time, its load's worker processes apart):
- the first cycle: the desired state's load, then a first (full, recorded) pass of every target;
- the steady state: `--rounds` times, 0.1% of the live files changed, then every target queued at once and
  passed as the daemon's workers pass what falls due together (`Workers.batch`, up to 256 at a time); the CPU per
  target and round is what one interval costs a daemon per target (at 100,000 targets and a 60 s interval,
  48 us a target is 8% of a core);
- a desired-state edit of 1% of the manifest files: the reload, then the daemon taking the new version in
  (`Daemon._refresh_desired`: its changed targets, scheduler, watches, parity, metrics).

Each tree (a checkout of reconciler; default: this one) runs in a subprocess of its own, one after the other
over copies of the same fleet. Give main's checkout first and this one second to compare them: the ratio is
to the first tree. --profile prints each tree's cProfile of the steady rounds (top functions by own time);
`--profile first`, of the first cycle.
--memory traces what the load, the first cycle and the rounds leave kept (tracemalloc, started after the
daemon's parts are built), in bytes a target and by module; it slows everything it traces, so its CPU figures
do not compare with a run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench import daemon_scale, desired_reload

# Run in the subprocess, with the tree to measure first on sys.path.
CHILD = textwrap.dedent(
    """
    import cProfile, gc, io, json, pstats, random, sys, time
    from pathlib import Path
    import reconciler
    from reconciler.settings import load_settings
    from reconciler.runtime import compose
    from reconciler.runtime.daemon import Daemon
    from reconciler.observe import logging as logs

    live, rounds, profile, memory = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def old_batch(workers, first):  # a tree before Workers.batch: the body of its work() loop
        from reconciler.runtime.workers import BATCH
        batch = workers.held([first, *workers.queue.take_ready(BATCH - 1)])
        if batch:
            unchanged = workers.c.reconciler.unchanged(batch) if len(batch) > 1 else {}
            rest = workers.unchanged_passes(batch, unchanged) if unchanged else batch
            with workers.c.reconciler.gathering(rest):
                workers.passes(rest, unchanged)

    def drain(daemon):
        # every ready target, in the batches a worker takes; what is left is scheduled for later
        batch = getattr(daemon.workers, "batch", None) or (lambda first: old_batch(daemon.workers, first))
        while (name := daemon.queue.get(timeout_s=0)) is not None:
            batch(name)

    settings = load_settings()
    logs.configure(settings.log.level, settings.log.format)  # as `reconciler run` does
    daemon = Daemon(compose.build(settings, daemon=True))
    if memory:  # what the desired state and the passes keep, not the daemon's parts built before
        import tracemalloc
        tracemalloc.start()
    cpu = time.process_time()
    daemon._refresh_desired()  # loads the desired state and queues every target, as the daemon's start does
    names = list(daemon._state.targets)
    load = time.process_time() - cpu
    profiler = cProfile.Profile() if profile in ("first", "steady") else None

    def drain_in(phase):  # drain(), profiled if `phase` is the one asked for
        if profiler and profile == phase:
            profiler.enable()
        drain(daemon)
        if profiler and profile == phase:
            profiler.disable()

    cpu = time.process_time()
    drain_in("first")
    first = time.process_time() - cpu
    gc.collect()
    rng = random.Random(5)
    per_round = max(1, len(names) // 1000)
    steady = []
    for _ in range(rounds):
        time.sleep(2.1)  # past the racy window of the files changed last round (domain/filestat.py)
        for i in rng.sample(range(len(names)), per_round):
            path = live / f"t{i:05}.yaml"
            path.write_text(path.read_text().replace("value-", f"v{time.time_ns()}-", 1))
        for name in names:
            daemon.queue.add(name)
        cpu = time.process_time()
        drain_in("steady")
        steady.append(time.process_time() - cpu)
    # A desired-state edit of 1% of the manifest files (a key's value in each of their targets): the reload
    # (the changed files parsed, every target kept or not), then the daemon taking the new version in (its
    # changed targets, the scheduler, the watches, parity, the metrics' groups), each in CPU seconds.
    files = sorted((live.parent / "desired").glob("targets-*.yaml"))
    for path in files[::100]:
        path.write_text(path.read_text().replace("key001: value-", "key001: edited-"))
    before = daemon._state
    cpu = time.process_time()
    edited = daemon.c.desired.current()
    reload_cpu = time.process_time() - cpu
    cpu = time.process_time()
    daemon._refresh_desired()
    take_in = time.process_time() - cpu
    assert daemon._state is edited and edited is not before
    changed = sum(1 for name, target in edited.targets.items() if before.targets.get(name) is not target)
    kept = {}
    if memory:
        gc.collect()
        by_file = tracemalloc.take_snapshot().statistics("filename")
        tracemalloc.stop()
        kept = {"total": sum(s.size for s in by_file), **{s.traceback[0].filename: s.size for s in by_file[:12]}}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
        print(out.getvalue(), file=sys.stderr)
    print(json.dumps({
        "code": reconciler.__file__, "targets": len(names), "load_cpu": load, "first_cpu": first,
        "steady_cpu": steady, "changed_per_round": per_round, "rss_mb": rss_mb(), "kept": kept,
        "edited": changed, "reload_cpu": reload_cpu, "take_in_cpu": take_in,
    }))
    """
)


def measure(tree: Path, fleet: Path, rounds: int, profile: str | None, memory: bool = False) -> dict[str, Any]:
    """The child run over a fresh copy of the fleet, in `tree`."""
    with tempfile.TemporaryDirectory(prefix="steady-passes-") as tmp:
        folder = Path(tmp) / "fleet"
        shutil.copytree(fleet, folder, symlinks=True)
        live, desired = folder / "live", folder / "desired"
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "RECONCILER_DESIRED_DIR": str(desired),
            "RECONCILER_DATABASE_URL": f"sqlite:///{folder / 'history.db'}",
            "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
            "RECONCILER_LOG__LEVEL": "warning",
            "RECONCILER_HTTP__PORT": "0",  # the Daemon binds its port when built (it never listens here)
        }
        up = [sys.executable, "-m", "reconciler", "db", "upgrade"]
        subprocess.run(up, env=env, cwd=tree, check=True, capture_output=True)
        child = [sys.executable, "-c", CHILD, str(live), str(rounds), profile or "-", "1" if memory else "0"]
        done = subprocess.run(child, env=env, cwd=tree, capture_output=True, text=True, check=False)
    result = desired_reload.child_result(tree, done)
    if profile:
        phase = "first cycle's" if profile == "first" else "steady rounds'"
        print(f"--- {tree}: the {phase} profile\n{done.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to measure (repeatable)")
    parser.add_argument("--folder", type=Path, help="a fleet built before (bench.daemon_scale's layout)")
    parser.add_argument("--profile", nargs="?", const="steady", choices=("steady", "first"), help="cProfile of either")
    parser.add_argument("--memory", action="store_true", help="what is kept per target, by module (slower)")
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    fleet = daemon_scale.fleet_folder(args.folder, args.targets, args.keys)
    results = []
    for tree in trees:
        r = measure(tree, fleet, args.rounds, args.profile, args.memory)
        n = r["targets"]
        per_pass = [cpu / n * 1e6 for cpu in r["steady_cpu"]]
        r["per_pass_us"] = sorted(per_pass)[len(per_pass) // 2]
        r["kept_per_target"] = r["kept"].get("total", 0) / n
        print(
            f"{tree}: {n:,} targets; load {r['load_cpu']:.1f} s CPU, first cycle {r['first_cpu']:.1f} s CPU "
            f"({r['first_cpu'] / n * 1e3:.2f} ms a target); steady rounds ({r['changed_per_round']} files changed "
            f"each) {', '.join(f'{us:.1f}' for us in per_pass)} us a target, median {r['per_pass_us']:.1f}; "
            f"RSS {r['rss_mb']:.0f} MB; an edit of {r['edited']:,} targets: reload {r['reload_cpu'] * 1e3:.0f} ms "
            f"CPU, the daemon's take-in {r['take_in_cpu'] * 1e3:.0f} ms CPU"
        )
        if r["kept"]:
            kept = r["kept"]
            print(f"  kept after the rounds (tracemalloc): {kept.pop('total') / n:,.0f} bytes a target; by module:")
            for file, size in kept.items():
                print(f"    {size / n:8,.0f}  {file.removeprefix(str(tree) + '/')}")
        results.append(r)
    base = results[0]
    for tree, r in zip(trees[1:], results[1:], strict=True):
        print(
            f"{tree} to {trees[0]}: steady {r['per_pass_us'] / base['per_pass_us']:.2f}x, "
            f"first cycle {r['first_cpu'] / base['first_cpu']:.2f}x, load {r['load_cpu'] / base['load_cpu']:.2f}x, "
            f"an edit's reload {r['reload_cpu'] / base['reload_cpu']:.2f}x and take-in "
            f"{r['take_in_cpu'] / base['take_in_cpu']:.2f}x"
            + (f", kept a target {r['kept_per_target'] / base['kept_per_target']:.2f}x" if r["kept"] else "")
        )
    if args.folder is None:
        shutil.rmtree(fleet)


if __name__ == "__main__":
    main()
