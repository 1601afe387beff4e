"""The lease store alone at fleet scale: three replicas share the targets, one dies, the two others take its
leases over at once, each in a process of its own, against one PostgreSQL database.

    .venv/bin/python -m bench.lease_takeover [--targets 300000] [--replicas 3]
    RECONCILER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (the default)

Time is simulated (each claim is given its `now`), so nothing waits for a lease to lapse: what is timed is the
claims themselves, as the daemon's lease tick makes them (store/leases.py). Reported: the first claims (every
replica taking its share of a free fleet at once); then, after one replica's heartbeat stops, how long the
survivors' claims take until they lease every target, and how many claims each made (a claim that fell short
of its share is made again, as a second later in the daemon). The baseline,
in the same run, is the same take-over by the survivors one after the other (no contention): its wall time is
the sum of theirs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench.replicas import scratch_database
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store import tables as t
from reconciler.store.leases import SqlLeaseStore

TTL = timedelta(seconds=30)
T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
ROUNDS = 10  # claims a replica makes at most, as its ticks would


def claimer(url: str, owner: str, targets: int, at: datetime, start: Callable[[], None] | None = None) -> list[float]:
    """`owner` heartbeats at `at` and claims until it holds its share (or ROUNDS claims); each claim's seconds."""
    leases = SqlLeaseStore(engines.create_engine(url))
    names = {f"app{i // 200:04}-t{i:06}": None for i in range(targets)}  # a mapping, as the daemon passes
    if start is not None:
        start()
    times: list[float] = []
    for _ in range(ROUNDS):
        begun = time.perf_counter()
        alive = leases.heartbeat(owner, at, TTL)
        held = leases.claim(owner, names, at, TTL, alive)
        times.append(time.perf_counter() - begun)
        if len(held) >= -(-targets // alive):
            break
    leases.engine.dispose()
    return times


def _worker(args: tuple[str, str, int, datetime, object]) -> tuple[str, list[float]]:
    url, owner, targets, at, barrier = args
    return owner, claimer(url, owner, targets, at, barrier.wait)  # type: ignore[attr-defined]


def together(url: str, owners: list[str], targets: int, at: datetime) -> tuple[float, dict[str, list[float]]]:
    """`owners` claim at once, each in a process of its own (started together by a barrier): the wall time
    until the last is done, and each one's claim times."""
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(len(owners) + 1)
    with context.Pool(len(owners)) as pool:
        result = pool.map_async(_worker, [(url, o, targets, at, barrier) for o in owners])
        barrier.wait()
        begun = time.perf_counter()
        done = dict(result.get(600))
        wall = time.perf_counter() - begun
    return wall, done


def heartbeats(url: str, owners: list[str], at: datetime) -> None:
    """Every one of `owners` alive at `at`, as their regular ticks keep them, before any of them claims."""
    leases = SqlLeaseStore(engines.create_engine(url))
    for owner in owners:
        leases.heartbeat(owner, at, TTL)
    leases.engine.dispose()


def leased(url: str, owners: list[str]) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).where(t.leases.c.owner.in_(owners))).scalar_one()
    engine.dispose()
    return int(count)


def describe(times: dict[str, list[float]]) -> str:
    return "; ".join(f"{o}: {len(ts)} claims, {sum(ts):.2f} s" for o, ts in sorted(times.items()))


def takeover(url: str, owners: list[str], targets: int, *, concurrent: bool) -> None:
    """Share the fleet among `owners`, stop the first one's heartbeat, and let the others take over."""
    heartbeats(url, owners, T0)
    wall, times = together(url, owners, targets, T0)
    print(f"  first claims, {len(owners)} at once: {wall:.2f} s ({describe(times)})")
    survivors, later = owners[1:], T0 + TTL + timedelta(seconds=1)
    heartbeats(url, survivors, later)
    if concurrent:
        wall, times = together(url, survivors, targets, later)
    else:
        times = {o: claimer(url, o, targets, later) for o in survivors}
        wall = sum(sum(ts) for ts in times.values())
    tried = sum(len(ts) for ts in times.values())
    print(f"  take-over, {'at once' if concurrent else 'one after the other'}: {wall:.2f} s, {tried} claims")
    print(f"    {describe(times)}; leased by the survivors: {leased(url, survivors):,} of {targets:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=300_000)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    for concurrent in (False, True):
        with scratch_database() as url:
            engine = engines.create_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
            owners = [f"replica-{i}" for i in range(args.replicas)]
            turns = "at once" if concurrent else "in turn"
            print(f"{args.targets:,} targets, {args.replicas} replicas, survivors {turns}")
            takeover(url, owners, args.targets, concurrent=concurrent)


if __name__ == "__main__":
    main()
