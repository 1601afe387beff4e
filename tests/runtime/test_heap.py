"""The garbage collector's policy (runtime/heap.py): survivors of a long full collection are frozen, and once the
process's allocated blocks have grown past the bound they are thawed, so that a garbage cycle among them is freed
after all.

The policy's callback is called here by hand, with a clock the test moves, on a Heap that is not installed:
gc.collect() in the test runs CPython's collector alone."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.observe.metrics import Metrics
from reconciler.runtime import heap, malloc

FULL = {"generation": heap.OLDEST}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A container the collector tracks; two of them pointing at each other are a garbage cycle once dropped."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def frozen_nothing() -> Iterator[None]:
    """Every test starts and ends with nothing frozen (a freeze is per process), and with no policy installed
    meanwhile: a test that runs `reconciler.cli.main()` in this process installs one (tests/cli)."""
    installed = heap.installed()
    if installed is not None:
        gc.callbacks.remove(installed.callback)
    gc.unfreeze()
    gc.collect()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.collect()
        if installed is not None:
            gc.callbacks.append(installed.callback)


def full_collection(policy: heap.Heap, clock: Clock, took_s: float) -> None:
    """A full collection as the collector runs it, then the policy's callback as if it had taken `took_s`."""
    policy.callback("start", FULL)
    gc.collect()
    clock.now += took_s
    policy.callback("stop", FULL)


def cycle() -> weakref.ref[Node]:
    """A cycle kept alive until the caller drops it: a weak reference to one of its nodes."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    kept.append(a)
    return weakref.ref(a)


kept: list[Node] = []


def test_a_long_full_collection_freezes_its_survivors_and_a_short_one_does_not(frozen_nothing: None) -> None:
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0, clock=clock)
    full_collection(policy, clock, 0.01)
    assert gc.get_freeze_count() == 0 and policy.freezes == 0
    full_collection(policy, clock, 0.2)
    assert gc.get_freeze_count() > 0 and policy.freezes == 1
    assert policy.full_collections == 2 and policy.longest_s == pytest.approx(0.2)
    assert policy.full_seconds == pytest.approx(0.21)
    # Young collections are not the policy's business.
    policy.callback("start", {"generation": 0})
    policy.callback("stop", {"generation": 0})
    assert policy.full_collections == 2


def test_a_frozen_cycle_is_freed_once_the_heap_has_grown_past_the_bound(frozen_nothing: None) -> None:
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=0.5, clock=clock)
    ref = cycle()
    full_collection(policy, clock, 0.2)  # walks everything: the cycle survives (it is referenced) and is frozen
    base = policy.base
    assert base == pytest.approx(sys.getallocatedblocks(), rel=0.01)
    kept.clear()  # now the frozen cycle is garbage: a plain collection cannot see it
    gc.collect()
    assert ref() is not None
    # New survivors, frozen after each long collection, until the heap has grown by half: then a thaw.
    grown: list[list[tuple[int]]] = []
    while policy.thaws == 0:
        grown.append([(i,) for i in range(base // 20)])  # a tuple and its int: two blocks each
        full_collection(policy, clock, 0.2)
        assert len(grown) < 20, "never thawed"
    assert gc.get_freeze_count() == 0 and policy.base is None
    assert sys.getallocatedblocks() - base > 0.45 * base  # not well before the bound
    full_collection(policy, clock, 0.2)  # the next full collection walks all: the cycle is freed
    assert ref() is None
    assert gc.get_freeze_count() > 0 and policy.thaws == 1  # and the survivors are frozen again


def test_the_bound_is_read_without_walking_the_frozen_objects(frozen_nothing: None) -> None:
    """Counting the frozen objects walks all of them with every thread stopped (0.1-0.3 s at 100,000 targets):
    the policy reads the allocator's count instead, whatever is frozen."""
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0, clock=clock)
    asked: list[int] = []

    def blocks() -> int:
        asked.append(sys.getallocatedblocks())
        return asked[-1]

    policy.blocks = blocks
    counted = gc.get_freeze_count
    try:
        gc.get_freeze_count = lambda: pytest.fail("the frozen objects were counted")  # type: ignore[assignment]
        for _ in range(5):
            full_collection(policy, clock, 0.2)
    finally:
        gc.get_freeze_count = counted  # type: ignore[assignment]
    assert len(asked) == 5 and policy.freezes == 5 and policy.base == asked[0]


def test_install_is_once_per_process_and_zero_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_installed", None)
    callbacks = list(gc.callbacks)
    monkeypatch.setattr(gc, "callbacks", callbacks)
    assert heap.install(0, 1.0) is None and heap.installed() is None
    assert gc.callbacks == callbacks
    policy = heap.install(0.05, 1.0)
    assert policy is not None and heap.installed() is policy
    assert heap.install(0.5, 2.0) is policy
    assert gc.callbacks.count(policy.callback) == 1


def test_the_daemon_exports_what_the_policy_did() -> None:
    clock = Clock()
    policy = heap.Heap(freeze_after_s=10.0, thaw_growth=1.0, clock=clock)
    policy.callback("start", FULL)
    clock.now += 0.25
    policy.callback("stop", FULL)
    metrics = Metrics()
    metrics.export_gc(policy.figures)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}
    assert families["reconciler_gc_full_collections"].samples[0].value == 1
    assert families["reconciler_gc_full_collection_seconds"].samples[0].value == pytest.approx(0.25)
    assert families["reconciler_gc_longest_full_collection_seconds"].samples[0].value == pytest.approx(0.25)
    assert families["reconciler_gc_freezes"].samples[0].value == 0
    assert families["reconciler_gc_thaws"].samples[0].value == 0


def test_a_heap_that_only_churns_is_not_walked_in_full_again(frozen_nothing: None) -> None:
    """Each round replaces a fifth of the heap (as passes replace their targets' last outcomes), each time frozen
    after a long collection: the heap does not grow, so nothing is thawed."""
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=0.5, clock=clock)
    full_collection(policy, clock, 0.2)
    base = policy.base
    assert base is not None
    churn = [Node() for _ in range(base // 10)]
    for _ in range(12):
        churn = [Node() for _ in range(len(churn))]  # the last round's nodes are freed (they were frozen)
        full_collection(policy, clock, 0.2)
    assert policy.freezes == 13 and policy.thaws == 0 and policy.base == base


def test_while_the_working_set_grows_nothing_is_thawed_and_growth_counts_from_where_it_stopped(
    frozen_nothing: None,
) -> None:
    """A daemon's load and first cycle double its heap: that growth thawed everything once, a walk of 2-3 s at
    100,000 targets. Told that its working set grows, the policy thaws nothing; told it has grown, it measures
    growth from the allocated blocks then, so a leak after that still thaws and is freed."""
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=0.5, clock=clock)
    policy.expect_growth()
    full_collection(policy, clock, 0.2)
    first = policy.base
    assert first is not None
    working_set: list[list[tuple[int]]] = []
    for _ in range(4):  # the first cycle: the heap grows to three times what the first walk saw
        working_set.append([(i,) for i in range(first // 4)])
        full_collection(policy, clock, 0.2)
    assert policy.thaws == 0 and sys.getallocatedblocks() > 2.5 * first

    policy.grown()  # the base: the heap as it is now
    assert policy.thaws == 0 and policy.base == pytest.approx(sys.getallocatedblocks(), rel=0.01)
    base = policy.base
    assert base is not None
    leaked: list[list[tuple[int]]] = []
    while policy.thaws == 0:  # a leak, from the base on: thawed once past half of the base, not before
        leaked.append([(i,) for i in range(base // 20)])
        full_collection(policy, clock, 0.2)
        assert len(leaked) < 20, "never thawed"
    assert sys.getallocatedblocks() - base > 0.45 * base


def test_once_the_working_set_is_built_it_is_frozen_at_once_without_a_full_collection(frozen_nothing: None) -> None:
    """What the first cycle's tail left in the oldest generation (the passes made after its last long collection,
    some 200,000 objects at 100,000 targets) waited there for the next full collection, 150-300 ms with every
    thread stopped whenever an allocation brought it on. `grown` freezes it at once, without walking it, after
    collecting the young generations, whose garbage cycles are freed rather than frozen."""
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=0.5, clock=clock)
    policy.expect_growth()
    full_collection(policy, clock, 0.2)  # a long collection in the first cycle: its survivors are frozen
    tail = [Node() for _ in range(20_000)]  # the passes made after it
    gc.collect()  # they reach the oldest generation, and stay there unfrozen
    assert {id(node) for node in tail} <= {id(o) for o in gc.get_objects(generation=heap.OLDEST)}
    garbage = cycle()
    kept.clear()  # a young garbage cycle
    full: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == heap.OLDEST:
            full.append(1)

    gc.callbacks.append(record)
    try:
        policy.grown()
    finally:
        gc.callbacks.remove(record)
    assert full == []  # nothing walked the oldest generation
    assert garbage() is None  # the young cycle was freed, not frozen
    assert not {id(node) for node in tail} & {id(o) for o in gc.get_objects()}  # the tail is frozen
    assert policy.freezes == 2 and not policy.growing
    assert policy.base == pytest.approx(sys.getallocatedblocks(), rel=0.01)


def test_a_heap_never_frozen_is_left_as_it_is_when_it_has_grown(frozen_nothing: None) -> None:
    """A small daemon, whose full collections all stay short, froze nothing: `grown` freezes nothing either (its
    frozen objects would never be walked again, its collections being short)."""
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=0.5, clock=Clock())
    policy.expect_growth()
    policy.grown()
    assert not policy.growing and policy.base is None and policy.freezes == 0 and gc.get_freeze_count() == 0


def test_once_frozen_a_leak_thaws_though_every_full_collection_is_short(frozen_nothing: None) -> None:
    """With the working set frozen, full collections walk little and are short; growth past the bound must
    still thaw, so the leak's cycles are freed."""
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=0.5, clock=clock)
    full_collection(policy, clock, 0.2)
    base = policy.base
    assert base is not None
    leaked: list[list[tuple[int]]] = []
    while policy.thaws == 0:
        leaked.append([(i,) for i in range(base // 20)])
        full_collection(policy, clock, 0.01)
        assert len(leaked) < 20, "never thawed"
    assert sys.getallocatedblocks() - base > 0.45 * base and gc.get_freeze_count() == 0


def test_settle_collects_in_full_once_the_working_set_is_built_and_not_while_it_is(
    frozen_nothing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the working set is built, CPython's thresholds decide; once it is built, settle() runs a full
    collection, whose callback may freeze what accumulated: frozen or not, and after a thaw too."""
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0, clock=clock)
    asked: list[tuple[int, ...]] = []
    collect = gc.collect

    def counted(*generation: int) -> int:
        asked.append(generation)
        return collect(*generation)

    monkeypatch.setattr(gc, "collect", counted)
    policy.settle()
    assert asked == []  # not built yet
    policy.expect_growth()
    full_collection(policy, clock, 0.2)  # a long one while the working set is built: frozen
    asked.clear()
    policy.settle()
    assert asked == [] and policy.base is not None  # still being built: CPython's own
    policy.grown()
    asked.clear()
    policy.settle()
    assert asked == [()]  # the oldest generation too
    policy.base = 1  # as if the heap had grown far past the bound since
    full_collection(policy, clock, 0.01)
    assert policy.thaws == 1 and policy.base is None
    asked.clear()
    policy.settle()
    assert asked == [()]  # the walk of everything a thaw asks for: now
    never = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0, clock=clock)
    never.expect_growth()
    never.grown()  # its collections stayed short: nothing frozen, still collected in full every SETTLE_S
    asked.clear()
    never.settle()
    assert asked == [()] and never.base is None


def test_the_c_allocators_free_memory_goes_back_once_built_and_after_each_settle(
    frozen_nothing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """malloc_trim (runtime/malloc.py) when the working set is built, frozen or not, and after each settle's
    full collection; never while it is being built."""
    trims: list[int] = []
    monkeypatch.setattr(malloc, "trim", lambda: trims.append(1) or True)
    clock = Clock()
    policy = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0, clock=clock)
    policy.expect_growth()
    full_collection(policy, clock, 0.2)
    policy.settle()
    assert trims == []
    policy.grown()
    assert len(trims) == 1
    policy.settle()
    policy.settle()
    assert len(trims) == 3
    never = heap.Heap(freeze_after_s=0.05, thaw_growth=1.0, clock=clock)
    never.grown()  # nothing frozen: trimmed all the same
    assert len(trims) == 4
