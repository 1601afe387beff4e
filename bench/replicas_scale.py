"""Replicas at scale: three daemons on one PostgreSQL database share the dry-run fleet of bench.daemon_scale
(file targets of 100 keys, 60 s interval, 5% with standing drift), and one of them is SIGKILLed.

    .venv/bin/python -m bench.replicas_scale [--targets 300000] [--replicas 3] [--minutes 3] [--settle 2]
                                             [--lease 30] [--folder DIR]
    RECONCILER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (the default)

Each replica is a real `reconciler run` subprocess; all load the whole desired state and lease their share of its
targets (store/leases.py). Reported, per replica: the first full cycle (until the replicas' full passes together
reach the fleet: wall, and each one's CPU with its load's worker processes), then the first cycle's wake
(`--settle` minutes: a target whose first pass fell off its slot takes one pass more to reach it,
runtime/scheduler.py), then over `--minutes` of steady state (0.1% of the live files changing a minute) each one's
share of a core, its peak RSS and the targets it leases (the spread: the largest share to the mean); the passes of
that window per target and interval, and at its end each target's last pass, read from the replicas'
/api/v1/status (each must be within one interval: the passes per interval over a short window depend on where in
the interval the passes fall, and bunch up after a start); then one replica is SIGKILLed: how long until the
others lease every target (must be within one lease time of the kill) and until each of its targets has had a pass
on a survivor. At the end every target's last pass is read from the survivors' /api/v1/status (each must be within
one interval), and runs of one target by two replicas at once are counted from history (must be 0). The baseline,
measured in the same run, is the first cycle's CPU: what each interval would cost without the memo.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.daemon_scale import (
    Mark,
    Window,
    children_cpu_seconds,
    cpu_seconds,
    fleet_folder,
    metric,
    paced,
    rss_mb,
    start,
)
from bench.replicas import overlapping_runs, scratch_database
from reconciler.store import tables

INTERVAL_S = 60.0  # the fleet's targets'
JITTER_S = 5.0  # the daemon's default
DUE_S = INTERVAL_S + JITTER_S + 1  # a pass is due an interval and its jitter after the last, on a 1 s tick


class Replica:
    def __init__(self, name: str, process: Any, port: int) -> None:
        self.name, self.process, self.port = name, process, port
        self.peak = 0.0

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid) + children_cpu_seconds(self.process.pid)

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mb(self.process.pid))

    def leased(self) -> int:
        return int(metric(self.port, "reconciler_leased_targets"))

    def looked_at(self) -> tuple[int, bool]:
        """The targets it leases, and whether each has had a pass here (no group's oldest successful pass is
        0: the replica's metrics show the targets it leases, each at 0 until its first pass here)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            lines = response.read().decode().splitlines()
        leased = sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("reconciler_leased_targets "))
        oldest = [line for line in lines if line.startswith("reconciler_oldest_successful_pass_timestamp_seconds{")]
        return int(leased), all(float(line.rsplit(" ", 1)[1]) > 0 for line in oldest)


def all_passed(replicas: list[Replica], targets: int) -> bool:
    """Whether `replicas` lease every target between them and each has had its pass."""
    seen = [r.looked_at() for r in replicas]
    return sum(leased for leased, _ in seen) >= targets and all(done for _, done in seen)


def launch(folder: Path, url: str, count: int, lease: float) -> list[Replica]:
    live, desired = folder / "live", folder / "desired"
    extra = {"RECONCILER_DATABASE_URL": url, "RECONCILER_SCHEDULER__LEASE_TTL_S": str(lease)}
    replicas = []
    for i in range(count):
        process, port = start(folder, live, desired, extra, name=f"replica-{i}")
        replicas.append(Replica(f"replica-{i}", process, port))
    return replicas


def until(check: Any, replicas: list[Replica], timeout: float, what: str, every: int = 5) -> float:
    """Wait for `check()`, asked every `every` seconds (/metrics of 100,000 targets is no free answer), sampling
    RSS each second; the seconds it took."""
    started = time.monotonic()
    for tick in itertools.count():
        for replica in replicas:
            if replica.process.poll() is not None:
                raise SystemExit(f"{replica.name} exited while waiting for {what}")
            replica.sample()
        try:
            if tick % every == 0 and check():
                return time.monotonic() - started
        except OSError:  # a replica not listening yet, or busy beyond the 10 s of an answer
            pass
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def steady(replicas: list[Replica], live: Path, targets: int, minutes: float, settle: float) -> tuple[Window, Window]:
    """Change 0.1% of the live files a minute for `settle` minutes (the first cycle's wake), then `minutes` more:
    the two windows of daemon_scale.paced, with each replica's CPU."""
    per_minute = max(1, targets // 1000)
    steps = itertools.count()

    def change() -> None:
        step = next(steps)
        for i in range(step * per_minute, (step + 1) * per_minute):
            path = live / f"t{(i * 7919) % targets:05}.yaml"
            path.write_text(path.read_text().replace("value-", f"v{int(time.time())}-", 1))

    def sample() -> None:
        for replica in replicas:
            replica.sample()

    def mark() -> Mark:
        passes = sum(metric(r.port, "reconciler_passes_total") for r in replicas)
        return Mark(time.monotonic(), {r.name: r.cpu() for r in replicas}, passes)

    return paced(minutes, settle, targets, change, sample, mark)


def last_passes(replicas: list[Replica]) -> dict[str, tuple[datetime, datetime]]:
    """Each target's latest pass on any of `replicas` (a target that moved is shown by both: the later counts),
    with when the replica that showed it was asked (its answer of 100,000 targets takes a while)."""
    latest: dict[str, tuple[datetime, datetime]] = {}
    for replica in replicas:
        url = f"http://127.0.0.1:{replica.port}/api/v1/status"
        asked = datetime.now(UTC)
        with urllib.request.urlopen(url, timeout=300) as response:
            for target in json.load(response)["targets"]:
                seen = (datetime.fromisoformat(target["at"]), asked)
                latest[target["target"]] = max(seen, latest.get(target["target"], seen))
    return latest


def late(replicas: list[Replica]) -> tuple[int, int, float, float]:
    """(targets the replicas show, those whose last pass was older than one interval, its jitter and a tick
    when their replica was asked, the oldest last pass's age then in seconds, and the share of the last passes
    that fell in the busiest second of the interval: 1/60 when they are spread evenly over it)."""
    latest = last_passes(replicas).values()
    ages = [(asked - at).total_seconds() for at, asked in latest]
    seconds = Counter(int(at.timestamp() % INTERVAL_S) for at, _ in latest)
    busiest = max(seconds.values(), default=0) / max(len(ages), 1)
    return len(ages), sum(1 for age in ages if age > DUE_S), max(ages, default=0.0), busiest


def kill_one(
    replicas: list[Replica], targets: int, lease: float, engine: sa.Engine
) -> tuple[Replica, int, float, float, float]:
    """SIGKILL the first replica: (it, the targets it leased, seconds after the kill until its leases lapsed and
    until the others lease every target, read from the database every half second, and until they have passed
    each of its targets)."""
    victim, survivors = replicas[0], replicas[1:]
    held = victim.leased()
    owner = f":{victim.process.pid}:"  # process.identity(): host:pid:start-ticks
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(30)
    killed, wall = time.monotonic(), datetime.now(UTC)
    leases, beats = tables.leases.c, tables.replicas.c
    others = sa.select(sa.func.count()).where(~leases.owner.contains(owner), leases.name != "housekeeping")
    with engine.connect() as conn:
        beat = conn.execute(sa.select(beats.heartbeat_at).where(beats.id.contains(owner))).scalar_one()
        lapsed = (beat + timedelta(seconds=lease) - wall).total_seconds()
        while conn.execute(others).scalar_one() < targets:
            conn.commit()
            if time.monotonic() - killed > 10 * lease:
                raise SystemExit("the survivors did not take the leases over")
            time.sleep(0.5)
    taken = time.monotonic() - killed
    until(lambda: all_passed(survivors, targets), survivors, 30 * lease, "their passes")
    return victim, held, lapsed, taken, time.monotonic() - killed


def run(args: argparse.Namespace, folder: Path, url: str) -> None:
    replicas = launch(folder, url, args.replicas, args.lease)
    try:
        started = time.monotonic()
        first = until(lambda: all_passed(replicas, args.targets), replicas, 3600, "the first cycle")
        print(f"{args.targets:,} targets, {args.replicas} replicas on PostgreSQL, lease {args.lease:g} s")
        print(f"first full cycle: every target leased and passed {first:.0f} s after the start (polled every 5 s)")
        first_cpu = {r.name: r.cpu() for r in replicas}
        for r in replicas:
            print(f"  {r.name}: {first_cpu[r.name]:.1f} s CPU with its load's workers, peak RSS {r.peak:.0f} MB")
        wake, window = steady(replicas, folder / "live", args.targets, args.minutes, args.settle)
        if args.settle:
            print(
                f"the first cycle's wake, {wake.wall / 60:.1f} min: "
                + ", ".join(f"{r.name} {wake.shares[r.name] * 100:.2f}%" for r in replicas)
                + f" of a core; {wake.passes:.2f} passes per target and interval"
            )
        leased = {r.name: r.leased() for r in replicas}
        mean = sum(leased.values()) / len(leased)
        print(f"steady state over {args.minutes:g} min after it:")
        for r in replicas:
            print(
                f"  {r.name}: {window.shares[r.name] * 100:5.2f}% of a core (target <= 10%), peak RSS {r.peak:.0f} MB "
                f"(target <= 1,200), {leased[r.name]:,} targets leased; CPU a minute / its first cycle's: "
                f"{window.shares[r.name] * 60 / first_cpu[r.name]:.3f}x"
            )
        print(f"  largest share to the mean: {max(leased.values()) / mean:.3f} (target <= 1.2)")
        print(f"  passes per target and interval: {window.passes:.2f}")
        shown, stale, oldest, busiest = late(replicas)
        print(
            f"  at its end, {shown:,} targets shown; last pass older than {DUE_S:g} s: {stale:,} (target: 0; "
            f"missing: {args.targets - shown:,}); the oldest {oldest:.1f} s; the busiest second of the interval "
            f"held {busiest:.1%} of the last passes (evenly: {1 / INTERVAL_S:.1%})"
        )
        engine = sa.create_engine(url)
        victim, held, lapsed, taken, passed = kill_one(replicas, args.targets, args.lease, engine)
        engine.dispose()
        survivors = replicas[1:]
        print(f"{victim.name} SIGKILLed holding {held:,} targets; its leases would lapse {lapsed:.1f} s later:")
        when = f"{taken - lapsed:.1f} s after" if taken >= lapsed else f"{lapsed - taken:.1f} s before"
        print(
            f"  the others lease every target {taken:.1f} s after the kill (target: within the lease, "
            f"{args.lease:g} s), {when} the lapse (a tick every third of a lease, a look for departed replicas "
            "every 2 s; read from the database every 0.5 s)"
        )
        print(f"  and have passed each of them {passed:.0f} s after the kill (polled every 5 s)")
        print(f"  leased now: {', '.join(f'{r.name} {r.leased():,}' for r in survivors)}")
        shown, stale, oldest, _ = late(survivors)
        print(
            f"  {shown:,} targets shown by the survivors; last pass older than {DUE_S:g} s: {stale:,} "
            f"(missing: {args.targets - shown:,}; the oldest {oldest:.1f} s); {time.monotonic() - started:.0f} s "
            "since the start"
        )
    finally:
        for r in replicas:
            if r.process.poll() is None:
                r.process.send_signal(signal.SIGTERM)
        for r in replicas:
            r.process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=300_000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--settle", type=float, default=2.0, help="minutes from the first cycle to the steady state")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--folder", type=Path, help="build the fleet here, or take the one built here before")
    args = parser.parse_args()
    if args.minutes <= 0 or args.settle < 0:
        parser.error("--minutes must be above 0 and --settle not below 0")
    folder = fleet_folder(args.folder, args.targets, 100)
    with scratch_database() as url:
        run(args, folder, url)
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            print(f"  runs of one target by two replicas at once (recorded runs): {overlapping_runs(conn)}")
        engine.dispose()


if __name__ == "__main__":
    main()
