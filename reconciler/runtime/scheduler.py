"""APScheduler triggers each target at its interval, with jitter; a trigger only enqueues the name."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from reconciler.domain.state import DesiredState
from reconciler.runtime.queue import WorkQueue

JOB_PREFIX = "target:"


class Scheduler:
    """Keeps one interval job per target in step with the desired state."""

    def __init__(self, queue: WorkQueue, *, default_interval_s: float, jitter_s: float) -> None:
        self._queue = queue
        self._default_interval_s = default_interval_s
        self._jitter_s = jitter_s
        # Jobs only enqueue, so one thread is plenty; coalesce and max_instances=1 keep misfires from piling up.
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

    def sync(self, state: DesiredState) -> tuple[set[str], set[str]]:
        """Add, change and remove target jobs to match `state`; returns (added, removed) names."""
        wanted = {name: t.spec.interval or self._default_interval_s for name, t in state.targets.items()}
        added, removed = set(wanted) - set(self._intervals), set(self._intervals) - set(wanted)
        for name in removed:
            self._scheduler.remove_job(JOB_PREFIX + name)
            del self._intervals[name]
        for name, interval in wanted.items():
            if self._intervals.get(name) == interval:
                continue
            jitter = min(self._jitter_s, interval / 2)
            first = datetime.now(UTC) + timedelta(seconds=interval + random.uniform(0, jitter))  # noqa: S311
            self._scheduler.add_job(
                self._queue.add,
                IntervalTrigger(seconds=interval, jitter=jitter or None),
                args=[name],
                id=JOB_PREFIX + name,
                name=f"reconcile {name}",
                replace_existing=True,
                next_run_time=first,
            )
            self._intervals[name] = interval
        return added, removed
