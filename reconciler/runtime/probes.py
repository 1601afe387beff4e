"""Probes and scrapes before passes.

Passes and HTTP answers share one interpreter lock. While the workers are busy (a first cycle of 100,000
targets: minutes of it), a thread that waits for the lock gets it after the switch interval, and loses it
again at every turn to whichever thread the OS wakes: rendering /metrics, 35 ms of work, took 300-400 ms, and
a Kubernetes probe or a Prometheus scrape may time out. So while /metrics, /healthz or /readyz is being
answered, a worker that ends a pass waits (without the lock) for the answer to be sent before it starts the
next one. A flood of requests cannot stop the passes: a worker waits at most YIELD_MAX_S at once, and gives
the answers at most SHARE of its time.

That starts once the request's head is read, and covers the workers and the reload of a new desired version
(environment parity's included), whose loops over every target wait the same way every 1,024 targets
(domain/pacing.py), giving answers up to RELOAD_SHARE of its time. An answer takes the event loop about
seven turns (accept, read, the application's steps, write), and each turn gives the lock up in select() and
waits for it again; with threads busy (a pass, the reload of a desired-state edit, the read thread) each wait
lasted at least Python's switch interval, 5 ms, and often several. The daemon sets it to SWITCH_INTERVAL_S
while it runs: with three threads spinning in Python, /readyz answered in 102 ms (median)
and 246 ms (slowest) at 5 ms, in 17 ms and 45 ms at 1 ms; in the daemon at 100,000 targets, during 1%
desired-state edits, the slowest /readyz went from 190-336 ms to 68-131 ms (docs/benchmarks.md, session 31).
A busy thread is asked to let go five times as often; the first cycle's CPU stayed within the runs' spread
(79-89 s at 1 ms, 81-84 s at 5 ms).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
YIELD_MAX_S = 0.25  # the longest a worker waits for answers at once
SHARE = 0.2  # the most of a worker's time given to answers: after waiting w, it does not wait for w * 4
# The reload's: it takes a second or two once per edit, and nothing waits for it but the edited targets' passes.
# At 0.2, one slow /readyz (60 ms) let it run for 240 ms without a wait, a /metrics arriving meanwhile included.
RELOAD_SHARE = 0.5
SWITCH_INTERVAL_S = 0.001  # the daemon's: how long a thread keeps the interpreter lock when another waits


def shorter_turns() -> float:
    """Set the interpreter's switch interval to SWITCH_INTERVAL_S; the one it replaces, to set back."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return previous


class Probes:
    """Counts the answers in progress; workers wait for them between passes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._answering = 0
        self._local = threading.local()  # per worker: when it may wait again

    @contextmanager
    def answering(self) -> Iterator[None]:
        with self._cond:
            self._answering += 1
        try:
            yield
        finally:
            with self._cond:
                self._answering -= 1
                if not self._answering:
                    self._cond.notify_all()

    def wait_turn(self, share: float = SHARE) -> float:
        """Between two passes: wait while an answer is in progress (within the bounds above, giving answers at
        most `share` of the thread's time); how long it waited. Nothing is locked when none is (the usual
        case)."""
        if not self._answering:
            return 0.0
        started = time.monotonic()
        if started < getattr(self._local, "not_before", 0.0):
            return 0.0
        with self._cond:
            self._cond.wait_for(lambda: not self._answering, YIELD_MAX_S)
        ended = time.monotonic()
        waited = ended - started
        self._local.not_before = ended + waited * (1 - share) / share
        return waited
