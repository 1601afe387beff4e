"""The work queue: target names, each queued at most once and worked by one worker at a time.

Adding a name that is being worked marks it dirty, so it is worked once more after the pass in flight
(the change that woke it may have come too late for that pass). Failed passes come back after an
exponential, jittered backoff per target, which success resets.

Times are kept to the millisecond (rounded down: a name queued for now is ready now, one queued for later may
come up to a millisecond early), and the names due in the same millisecond wait in one bucket, in the order
they were queued: the heap holds each time once, not each name. A daemon's passes fall due on the scheduler's
one-second tick (scheduler.py), so a few hundred times stand for 100,000 names, and handing one out takes it
from the front of its bucket. A heap of one entry per name cost ~6 µs a name to pop at 100,000 targets (a cache
miss on each of its ~34 comparisons), a fifth of the Python time of the steady state (py-spy on
bench.daemon_scale).
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from collections import deque


class WorkQueue:
    """A de-duplicating, delaying queue of target names, safe for many threads."""

    def __init__(self, *, backoff_base_s: float = 1.0, backoff_max_s: float = 300.0) -> None:
        self._cond = threading.Condition()
        self._times: list[int] = []  # a heap of the milliseconds that have a bucket
        self._buckets: dict[int, deque[str]] = {}  # names queued for each millisecond (some since re-queued sooner)
        self._ready_at: dict[str, int] = {}  # queued names and the millisecond they become ready
        self._working: set[str] = set()
        self._dirty: dict[str, float] = {}  # re-added while working: the earliest time asked for
        self._failures: dict[str, int] = {}
        self._closed = False
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    def add(self, name: str, delay_s: float = 0.0) -> None:
        """Queue `name` to be worked in `delay_s` seconds (sooner if it is already queued for sooner)."""
        at = time.monotonic() + max(delay_s, 0.0)
        with self._cond:
            if self._push(name, at):
                self._cond.notify()

    def _push(self, name: str, at: float) -> bool:
        """Queue `name` for `at` unless it is queued for sooner; whether a worker should look again. The lock is
        held."""
        if self._closed:
            return False
        if name in self._working:
            self._dirty[name] = min(at, self._dirty.get(name, at))
            return False
        ms = math.floor(at * 1000)
        if name in self._ready_at and self._ready_at[name] <= ms:
            return False
        self._ready_at[name] = ms
        bucket = self._buckets.get(ms)
        if bucket is None:
            self._buckets[ms] = deque((name,))
            heapq.heappush(self._times, ms)
        else:
            bucket.append(name)
        return True

    def finish(self, next_in: dict[str, float | None]) -> None:
        """Passes that ended well, each queued again after its delay (None: not again): what done(), forget()
        and add() do for each, under one lock for the lot (a batch of unchanged passes)."""
        now = time.monotonic()
        woke = False
        with self._cond:
            for name, delay in next_in.items():
                self._working.discard(name)
                self._failures.pop(name, None)
                again = self._dirty.pop(name, None)
                if again is not None:
                    woke = self._push(name, again) or woke
                if delay is not None:
                    woke = self._push(name, now + max(delay, 0.0)) or woke
            if woke:
                self._cond.notify()

    def add_rate_limited(self, name: str, delay_s: float | None = None) -> float:
        """Queue `name` again after its backoff (or `delay_s` if the error asked for one); returns the delay."""
        with self._cond:
            failures = self._failures.get(name, 0) + 1
            self._failures[name] = failures
        if delay_s is None:
            base = min(self.backoff_base_s * 2 ** (failures - 1), self.backoff_max_s)
            delay_s = base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
        self.add(name, delay_s)
        return delay_s

    def forget(self, name: str) -> None:
        """Reset `name`'s backoff after a successful pass."""
        with self._cond:
            self._failures.pop(name, None)

    def get(self, timeout_s: float | None = None) -> str | None:
        """The next ready name, marked as being worked; None when closed or on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                name = self._pop_ready(now)
                if name is not None:
                    return name
                wait = self._times[0] / 1000 - now if self._times else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def take_ready(self, limit: int, among: int = 1, least: int | None = None) -> list[str]:
        """Up to `limit` more names that are ready now, marked as being worked, without waiting: a worker takes
        the passes that fell due together (the scheduler's tick) as one batch. With `among` takers, no more
        than its share of the names ready (rounded up), and never fewer than `least` for that: `among` workers
        split a tick's names evenly, each in batches as large as the share allows."""
        taken: list[str] = []
        with self._cond:
            if self._closed:
                return taken
            now = time.monotonic()
            if among > 1:
                limit = min(limit, max(least or 0, -(-self._ready_count(now) // among)))
            while len(taken) < limit and (name := self._pop_ready(now)) is not None:
                taken.append(name)
        return taken

    def _ready_count(self, now: float) -> int:
        """About how many names are ready at `now` (a name re-queued for sooner still counts in its old bucket
        too); the lock is held. The heap holds one time per millisecond that has names queued: in a steady state
        about one per tick of the interval, more while retries back off or watches wake targets."""
        ms = now * 1000
        buckets = self._buckets
        return sum(len(buckets[at]) for at in self._times if at <= ms)

    def _pop_ready(self, now: float) -> str | None:
        """The next name ready at `now`, marked as being worked; the lock is held."""
        times, ready_at = self._times, self._ready_at
        while times and times[0] <= now * 1000:
            ms = times[0]
            bucket = self._buckets[ms]
            while bucket:
                name = bucket.popleft()
                if ready_at.get(name) == ms:  # else queued again for sooner meanwhile, and handed out then
                    del ready_at[name]
                    self._working.add(name)
                    return name
            heapq.heappop(times)
            del self._buckets[ms]
        return None

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def done(self, name: str) -> None:
        """Mark `name` as no longer worked; queue it again if it was added meanwhile."""
        with self._cond:
            self._working.discard(name)
            again = self._dirty.pop(name, None)
        if again is not None:
            self.add(name, again - time.monotonic())

    def close(self) -> None:
        """Wake every waiting worker; nothing more is handed out."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready_at)

    def due(self) -> int:
        """How many queued names are ready now (the rest wait for their time)."""
        now = time.monotonic() * 1000
        with self._cond:
            return sum(1 for ms in self._ready_at.values() if ms <= now)

    def __contains__(self, name: object) -> bool:
        """Whether `name` has a pass coming: queued, or queued again while it is worked."""
        with self._cond:
            return name in self._ready_at or name in self._dirty

    @property
    def working(self) -> frozenset[str]:
        with self._cond:
            return frozenset(self._working)
