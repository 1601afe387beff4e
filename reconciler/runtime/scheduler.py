"""When passes are due. A target's next pass is queued when its pass ends (the work queue holds the schedule,
one entry per target, so a watch or a retry that wants it sooner wins); APScheduler runs the housekeeping jobs
(desired-state edits, leases). One APScheduler job per target cost ~0.5 ms of CPU per trigger at 10,000
targets (bench/daemon_scale.py). Interval passes are due on a one-second tick, so the passes due in the same
second run back to back instead of each waking a worker on its own.

Each target has its own second of the interval, from a hash of its name (its slot). Its next pass is due an
interval after the last one ends, and then: on its slot if that comes within the jitter; a tick back onto a
slot it just missed; else, as before, a random jitter of up to the jitter, which brings it nearer its slot by
half the jitter a pass on average. Passes that fell due together (a start, a replica taking another's targets
over, a new policy: all of them at once) so spread evenly over the interval within about twice interval /
jitter passes, and stay spread. A random jitter alone spreads such a burst as a random walk, by ~1.4 s times
the square root of the passes with the default 5 s (~11 s after an hour of 60 s passes), and a replica's
100,000 passes after its first cycle came in one burst each interval, the last of it past its interval. A
step of the whole jitter each pass would spread them twice as fast, but then every gap on the way is the
longest the jitter allows, and any wait puts it past it. The slots are on the wall clock, the same on every
replica and across restarts.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.domain.state import DesiredState

TICK_S = 1.0  # passes due within one tick run together
_random = random.Random()  # noqa: S311 - jitter, not security


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
        self._intervals: dict[str, float] = {}

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
        wanted = {name: t.spec.interval or self._default_interval_s for name, t in state.targets.items()}
        added, removed = set(wanted) - set(self._intervals), set(self._intervals) - set(wanted)
        self._intervals = wanted
        return added, removed

    def next_delay(self, name: str) -> float | None:
        """When `name`'s next pass is due after one ends: its interval, and up to the jitter (at most half the
        interval) toward its slot; None when it is no longer a target."""
        interval = self._intervals.get(name)
        return None if interval is None else self._delay(name, interval, time.monotonic(), time.time())

    def next_delays(self, names: Iterable[str]) -> dict[str, float | None]:
        """next_delay() of each of `names`, at one reading of the clocks (passes that ended together)."""
        now, wall, intervals = time.monotonic(), time.time(), self._intervals
        return {
            name: None if (interval := intervals.get(name)) is None else self._delay(name, interval, now, wall)
            for name in names
        }

    def _delay(self, name: str, interval: float, now: float, wall: float) -> float:
        tick = min(TICK_S, interval / 10)
        delay = toward_slot(name, interval, min(self._jitter_s, interval / 2), tick, wall)
        # Passes due within the same tick run together: waking a worker for each pass on its own, every few
        # milliseconds at 10,000 targets, cost several times the CPU of the pass itself (cold caches, a
        # context switch each). The tick is at most a tenth of the interval, so no pass is late by more.
        return math.ceil((now + delay) / tick) * tick - now


def slot(name: str, interval: float) -> float:
    """`name`'s second of the interval: where on the wall clock, modulo the interval, its passes fall."""
    return zlib.crc32(name.encode()) / 2**32 * interval


def toward_slot(name: str, interval: float, jitter: float, tick: float, wall: float) -> float:
    """The delay, at wall-clock time `wall`, from a pass of `name` that just ended to its next: the interval, and
    then its slot if it comes within `jitter` after that; a slot it missed by a little (a busy moment, the tick)
    is taken back by up to `tick`, a pass that much early; any other, a random jitter nearer (the module's
    docstring). Between interval - tick and interval + jitter."""
    ahead = (slot(name, interval) - (wall + interval)) % interval  # from a plain interval to its slot
    if ahead <= jitter:
        return interval + ahead
    missed = interval - ahead
    if missed <= jitter:
        return interval - min(missed, tick)
    return interval + _random.uniform(0, jitter)
