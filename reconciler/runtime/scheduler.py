"""When passes are due. A target's next pass is queued when its pass ends (the work queue holds the schedule,
one entry per target, so a watch or a retry that wants it sooner wins); APScheduler runs the housekeeping jobs
(desired-state edits, leases). One APScheduler job per target cost ~0.5 ms of CPU per trigger at 10,000
targets (bench/daemon_scale.py). Interval passes are due on a one-second tick, so the passes due in the same
second run back to back instead of each waking a worker on its own.

Each target has its own second of the interval, from a hash of its name (its slot), on the wall clock: the
same on every replica and across restarts. When a pass ends, its target's next pass is due on its slot: the
first time the slot comes between half an interval and the interval plus the jitter from then, a pass up to
half an interval early or up to the jitter late. A slot that does not come in that window (the passes of a
target off its slot by more than the jitter and less than half an interval) is reached in two: the next pass
half an interval and half the way to the slot later, and the one after on it. So passes that fell due
together (a start, the end of a first cycle, a replica taking another's targets over, a new policy: all of
them at once) are spread evenly over the interval by the second pass after, and a target on its slot stays
there: each gap is the interval, and a pass made late (a busy moment, a slow read) is followed by one that
much early, so the passes still start an interval apart. Coming early costs one pass more per target, once
after such a burst.

A random jitter alone spreads such a burst as a random walk, by ~1.4 s times the square root of the passes
with the default 5 s (~11 s after an hour of 60 s passes): a replica's 100,000 passes after its first cycle
came in one burst each interval, the last of it past its interval. Stepping toward the slot by at most the
jitter each pass (never early by more than a tick) spread them in about twice interval / jitter passes, 24 at
the defaults: at 300,000 targets on three replicas the first cycle's burst was still felt 2 minutes later, a
few targets past their interval. A jitter of 0 turns the slots off: every gap is the interval.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.domain.manifest import Target
from reconciler.domain.state import DesiredState

TICK_S = 1.0  # passes due within one tick run together


class Scheduler:
    """Knows every target's interval, and runs the housekeeping jobs."""

    def __init__(self, *, default_interval_s: float, jitter_s: float) -> None:
        self._default_interval_s = default_interval_s
        self._jitter_s = jitter_s
        # Housekeeping jobs are short, so one thread is plenty; coalesce and max_instances=1 keep misfires
        # from piling up.
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        # The desired state's targets: each interval is read from its manifest when a pass ends. A map of
        # name to interval of its own cost ~35 bytes a target (10 MB on a replica holding 300,000 manifests).
        self._targets: Mapping[str, Target] = {}

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def add_job(self, job_id: str, func: object, interval_s: float) -> None:
        """A housekeeping job at a fixed interval (for example, looking for desired-state edits)."""
        self._scheduler.add_job(func, IntervalTrigger(seconds=interval_s), id=job_id, replace_existing=True)

    def once(self, job_id: str, func: object, at: datetime) -> None:
        """A housekeeping job once, at `at` (replacing the one of that id still waiting); on the same thread as
        the others, so it never runs at the same time as one of them."""
        self._scheduler.add_job(func, DateTrigger(run_date=at), id=job_id, replace_existing=True)

    def sync(self, state: DesiredState) -> tuple[set[str], set[str]]:
        """Take each target's interval from `state`; returns (added, removed) names."""
        old, new = self._targets.keys(), state.targets.keys()
        added, removed = set(new - old), set(old - new)
        self._targets = state.targets
        return added, removed

    def interval(self, name: str) -> float | None:
        """`name`'s interval; None when it is no target."""
        target = self._targets.get(name)
        return None if target is None else target.spec.interval or self._default_interval_s

    def next_delay(self, name: str) -> float | None:
        """When `name`'s next pass is due after one ends: its interval, and up to the jitter (at most half the
        interval) toward its slot; None when it is no longer a target."""
        interval = self.interval(name)
        return None if interval is None else self._delay(name, interval, time.monotonic(), time.time())

    def next_delays(self, names: Iterable[str]) -> dict[str, float | None]:
        """next_delay() of each of `names`, at one reading of the clocks (passes that ended together)."""
        now, wall, interval_of = time.monotonic(), time.time(), self.interval
        return {
            name: None if (interval := interval_of(name)) is None else self._delay(name, interval, now, wall)
            for name in names
        }

    def _delay(self, name: str, interval: float, now: float, wall: float) -> float:
        tick = min(TICK_S, interval / 10)
        delay = toward_slot(name, interval, min(self._jitter_s, interval / 2), wall)
        # Passes due within the same tick run together: waking a worker for each pass on its own, every few
        # milliseconds at 10,000 targets, cost several times the CPU of the pass itself (cold caches, a
        # context switch each). The tick is at most a tenth of the interval, so no pass is late by more.
        return math.ceil((now + delay) / tick) * tick - now


def slot(name: str, interval: float) -> float:
    """`name`'s second of the interval: where on the wall clock, modulo the interval, its passes fall."""
    return zlib.crc32(name.encode()) / 2**32 * interval


def toward_slot(name: str, interval: float, jitter: float, wall: float) -> float:
    """The delay, at wall-clock time `wall`, from a pass of `name` that just ended to its next: on its slot if
    the slot comes between half an interval and the interval plus `jitter` from `wall`; else half an interval and
    half the way there, from where the next is on it (the module's docstring). With no jitter, the interval."""
    if jitter <= 0:
        return interval
    ahead = (slot(name, interval) - (wall + interval)) % interval  # from a plain interval to its slot
    if ahead <= jitter:  # the slot, up to the jitter late
        return interval + ahead
    if ahead >= interval / 2:  # the slot, up to half an interval early
        return ahead
    # Half an interval and half the way to the slot: from there the slot comes half an interval and more after, for
    # the next pass, with half of `ahead` (over half the jitter) to spare for a slow pass.
    return (interval + ahead) / 2
