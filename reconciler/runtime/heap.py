"""Keep CPython's cyclic garbage collector from stopping the process for long.

A full collection walks every tracked object of the oldest generation while no other thread runs. The daemon's
heap is mostly long-lived: the desired state and each target's last pass, ~50 tracked objects a target. At
20,000 targets a full collection took up to 0.8 s, and while the start-up load and the first cycle built that
heap the collector ran ~40 of them: a fifth of the first cycle's CPU, and /readyz unanswered for as long.

So after a full collection that took longer than `freeze_after_s`, everything that survived it is moved to
the permanent generation (gc.freeze): later full collections walk only what was created since, and objects
frozen are still freed by reference counting as soon as nothing points at them. What a freeze gives up is
freeing a frozen object that later becomes part of an unreachable cycle. To bound that, once the process's
allocated blocks (sys.getallocatedblocks: every object, tracked or not, read in constant time) have grown by
`thaw_growth` (1.0: doubled) since the last walk of everything, the frozen objects are thawed, and the next full
collection walks (and frees) everything again before freezing the survivors. A heap that only churns (each pass
replaces its target's last outcome) does not grow, and is walked in full again only if it leaks. A freeze
happens inside the collector's own callback, the one moment at which no unreachable cycle is left to keep.

The growth is read from the allocator, not from the frozen objects: counting those (gc.get_freeze_count) walks
the whole frozen list with every thread stopped, 40-100 ns an object, 0.1-0.3 s at 100,000 targets: a pause
in the phases (an /api/v1/status answer, a desired-state edit) in which /readyz has been slow.

A daemon's first cycle builds its working set: each target's last pass doubles the heap the desired state's
load built, and the bound then thawed everything once, for a walk of 2-3 s at 100,000 targets with every thread
stopped (/readyz and /metrics unanswered for as long). That growth is not garbage. So while the daemon says its
working set grows (`expect_growth`, from its start until it first catches up with its passes: runtime/daemon.py)
nothing is thawed. Once it says it has grown (`grown`), where a long collection has frozen a heap already, the
young generations are collected and everything is frozen at once, without a full collection (gc.freeze moves
the generations' lists), and growth is measured from the allocated blocks then: a leak shows as growth past the
bound from there, looked at after every full collection, the short ones included. Otherwise what the first cycle's
tail left in the oldest generation (at 100,000 targets some 200,000 objects: the last passes made after the
last long collection) waited there for the next full collection, which an allocation brings on at any time
(an /api/v1/status answer did), and took 150-300 ms with every thread stopped. The price: a garbage cycle
that had reached the oldest generation by then stays frozen until a thaw, a one-off bounded by that moment's
oldest generation.

Once the working set is frozen, CPython runs the next full collection only when the objects promoted to the
oldest generation since the last one come to a quarter of that one's survivors. A steady state fills that slowly:
at 100,000 targets no full collection ran in three minutes, and what accumulated meanwhile (the new passes of
changed targets) was walked at once when an allocation burst brought one on: an /api/v1/status answer did, for
100-195 ms with every thread stopped, /readyz waiting for it (bench.daemon_scale). So the daemon asks for a full
collection every SETTLE_S once the working set is built (`settle`): each walks what accumulated since the last,
and the first one to take longer than `freeze_after_s` freezes it, as any long collection does.

The callback takes no lock (a callback runs wherever an allocation triggers a collection, possibly inside a
lock its thread holds); what it counts is read by /metrics (observe/metrics.py).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.runtime import malloc

OLDEST = 2
SETTLE_S = 30.0  # once the working set is built, a full collection at least this often (settle)


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
    base: int | None = None  # allocated blocks after the last walk of everything; None: nothing frozen
    growing: bool = False  # the working set is being built: its growth thaws nothing (expect_growth)
    built: bool = False  # the working set was built (grown): settle collects from then on
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    blocks: Callable[[], int] = field(default=sys.getallocatedblocks, repr=False)
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
        blocks = self.blocks()
        # Growth is looked at after every full collection, short ones too: once the working set is frozen, they
        # all are short, and a leak must still thaw.
        if self.base is not None and not self.growing and blocks > self.base * (1 + self.thaw_growth):
            gc.unfreeze()  # the next full collection walks them all and frees any cycle among them
            self.base = None
            self.thaws += 1
            return
        if took < self.freeze_after_s:
            return
        if self.base is None:  # this collection walked everything
            self.base = blocks
        gc.freeze()
        self.freezes += 1

    def expect_growth(self) -> None:
        """The process builds its working set from now (the daemon, until it first catches up): no thaw."""
        self.growing = True

    def grown(self) -> None:
        """The working set is built: where the policy froze a heap already, free the young generations' garbage
        cycles, freeze everything without a full collection, and measure growth (a leak) from the allocated
        blocks now. A heap whose full collections all stayed short is left to the collector as it is. Either way
        the C allocator's free memory goes back to the system."""
        self.growing = False
        self.built = True
        if self.base is not None:
            gc.collect(1)  # the young generations (CPython 3.11-3.13: 0 and 1), not the oldest
            gc.freeze()
            self.base = self.blocks()
            self.freezes += 1
        malloc.trim()  # what building it freed goes back to the system (runtime/malloc.py)

    def settle(self) -> None:
        """A full collection now, once the working set is built (the module's docstring); nothing while it is
        being built. A heap never frozen walks in less than `freeze_after_s`; after a thaw, the walk of
        everything comes now, not when CPython's thresholds bring it on. Then the C allocator's free memory goes
        back to the system."""
        if self.growing or not self.built:
            return
        gc.collect()
        malloc.trim()

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
