"""When passes are due. A target's next pass is queued, with jitter, when its pass ends (the work queue holds
the schedule, one entry per target, so a watch or a retry that wants it sooner wins); APScheduler runs the
housekeeping jobs (desired-state edits, leases). One APScheduler job per target cost ~0.5 ms of CPU per
trigger at 10,000 targets (bench/daemon_scale.py). Interval passes are due on a one-second tick, so the
passes due in the same second run back to back instead of each waking a worker on its own."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

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
        """When `name`'s next pass is due after one ends: its interval plus jitter (at most half the
        interval); None when it is no longer a target."""
        interval = self._intervals.get(name)
        return None if interval is None else self._delay(interval, time.monotonic())

    def next_delays(self, names: Iterable[str]) -> dict[str, float | None]:
        """next_delay() of each of `names`, at one reading of the clock (passes that ended together)."""
        now, intervals = time.monotonic(), self._intervals
        return {
            name: None if (interval := intervals.get(name)) is None else self._delay(interval, now) for name in names
        }

    def _delay(self, interval: float, now: float) -> float:
        delay = interval + random.uniform(0, min(self._jitter_s, interval / 2))  # noqa: S311 - jitter
        # Passes due within the same tick run together: waking a worker for each pass on its own, every few
        # milliseconds at 10,000 targets, cost several times the CPU of the pass itself (cold caches, a
        # context switch each). The tick is at most a tenth of the interval, so no pass is late by more.
        tick = min(TICK_S, interval / 10)
        return math.ceil((now + delay) / tick) * tick - now
