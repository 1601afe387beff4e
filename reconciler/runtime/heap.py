"""Keep CPython's cyclic garbage collector from stopping the process for long.

A full collection walks every tracked object of the oldest generation while no other thread runs. The daemon's
heap is mostly long-lived: the desired state and each target's last pass, ~50 tracked objects a target. At
20,000 targets a full collection took up to 0.8 s, and while the start-up load and the first cycle built that
heap the collector ran ~40 of them: a fifth of the first cycle's CPU, and /readyz unanswered for as long.

So after a full collection that took longer than `freeze_after_s`, everything that survived it is moved to
the permanent generation (gc.freeze): later full collections walk only what was created since, and objects
frozen are still freed by reference counting as soon as nothing points at them. What a freeze gives up is
freeing a frozen object that later becomes part of an unreachable cycle. To bound that, once the frozen
objects still in memory have grown by `thaw_growth` (1.0: doubled) since the last walk of all of them, they are
thawed, and the next full collection walks (and frees) everything again before freezing the survivors. A heap
that only churns (each pass replaces its target's last outcome) is walked in full again only if it leaks. A
freeze happens inside the collector's own callback, the one moment at which no unreachable cycle is left to keep.

A daemon's first cycle builds its working set: each target's last pass doubles the heap the desired state's
load built, and the bound then thawed everything once, for a walk of 2-3 s at 100,000 targets with every thread
stopped (/readyz and /metrics unanswered for as long). That growth is not garbage. So while the daemon says its
working set grows (`expect_growth`, from its start until it first catches up with its passes: runtime/daemon.py)
nothing is thawed, and once it says it has grown (`grown`), growth is measured from the frozen objects at the
next long full collection: a leak shows as growth past the bound from there.

The callback takes no lock (a callback runs wherever an allocation triggers a collection, possibly inside a
lock its thread holds); what it counts is read by /metrics (observe/metrics.py).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OLDEST = 2


@dataclass
class Heap:
    """The policy, installed once per process (`install`), and what it did (`figures`)."""

    freeze_after_s: float
    thaw_growth: float
    full_collections: int = 0
    full_seconds: float = 0.0
    longest_s: float = 0.0
    freezes: int = 0
    thaws: int = 0
    frozen: int = 0  # objects frozen after the last walk of all of them (an upper bound: freed ones stay counted)
    walked: int | None = None  # tracked objects after the last walk of all of them; None: nothing frozen
    growing: bool = False  # the working set is being built: its growth thaws nothing (expect_growth)
    _rebase: bool = field(default=False, repr=False)  # grown() was said: the next long collection is the base
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    _started: float = field(default=0.0, repr=False)

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != OLDEST:
            return
        if phase == "start":
            self._started = self.clock()
            return
        took = self.clock() - self._started
        self.full_collections += 1
        self.full_seconds += took
        self.longest_s = max(self.longest_s, took)
        if took < self.freeze_after_s:
            return
        # The survivors: the oldest generation holds nothing else right after a full collection.
        survivors = len(gc.get_objects(OLDEST))
        if self._rebase:
            self._rebase = self.growing = False
            if self.walked is not None:  # the working set built: growth counts from what is frozen now
                self.walked, self.frozen = gc.get_freeze_count(), 0
        if self.walked is None:  # this collection walked all of them
            self.walked, self.frozen = survivors, 0
        elif not self.growing and self.frozen + survivors > self.walked * self.thaw_growth and self._grown(survivors):
            gc.unfreeze()  # the next full collection walks them all and frees any cycle among them
            self.walked = None
            self.thaws += 1
            return
        else:
            self.frozen += survivors
        gc.freeze()
        self.freezes += 1

    def expect_growth(self) -> None:
        """The process builds its working set from now (the daemon, until it first catches up): no thaw."""
        self.growing = True

    def grown(self) -> None:
        """The working set is built: the frozen objects at the next long full collection are the base that
        growth (a leak) is measured from. Flags only: the callback, which may run at any allocation, applies it."""
        self._rebase = True

    def _grown(self, survivors: int) -> bool:
        """Whether the frozen objects still in memory, with `survivors`, have grown past the bound since the last
        walk of all of them. The running sum says so first, but it keeps objects freed since (passes replace
        their target's last outcome all the time); this counts them, walking the frozen list once (~16 ns an
        object, where a collection takes several times more), and only when the sum has passed the bound."""
        assert self.walked is not None
        self.frozen = max(0, gc.get_freeze_count() - self.walked)
        return self.frozen + survivors > self.walked * self.thaw_growth

    def figures(self) -> dict[str, float]:
        """What the policy did, for /metrics (observe/metrics.py exports them)."""
        return {
            "full_collections": self.full_collections,
            "full_collection_seconds": self.full_seconds,
            "longest_full_collection_seconds": self.longest_s,
            "freezes": self.freezes,
            "thaws": self.thaws,
        }


_installed: Heap | None = None


def install(freeze_after_s: float, thaw_growth: float) -> Heap | None:
    """Install the policy in this process (once; a later call returns the one installed). With
    `freeze_after_s` 0 nothing is installed and the collector behaves as CPython's default."""
    global _installed  # noqa: PLW0603 - gc's callbacks are per process
    if _installed is None and freeze_after_s > 0:
        _installed = Heap(freeze_after_s, thaw_growth)
        gc.callbacks.append(_installed.callback)
    return _installed


def installed() -> Heap | None:
    return _installed
