"""When a target's next pass is due: its interval, its own second of the interval within the jitter, and the tick
that lets due passes run together."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import yaml

from reconciler.desired.loader import load
from reconciler.domain.state import DesiredState
from reconciler.runtime.scheduler import TICK_S, Scheduler, slot, toward_slot


def state(folder: Path, intervals: dict[str, str | None]) -> DesiredState:
    folder.mkdir(parents=True, exist_ok=True)
    for name, interval in intervals.items():
        spec: dict[str, object] = {"source": {"adapter": "file", "path": f"{name}.yaml"}, "desired": {}}
        if interval is not None:
            spec["interval"] = interval
        (folder / f"{name}.yaml").write_text(
            yaml.safe_dump({"kind": "Target", "metadata": {"name": name}, "spec": spec})
        )
    return load(folder)


def test_next_pass_is_the_interval_plus_jitter_on_the_tick(tmp_path: Path) -> None:
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    added, removed = scheduler.sync(state(tmp_path / "d", {"a": "60s", "b": None, "fast": "2s"}))
    assert added == {"a", "b", "fast"} and removed == set()
    for _ in range(200):
        before = time.monotonic()
        due = scheduler.next_delay("a")
        after = time.monotonic()
        assert due is not None
        assert 30 <= due <= 65 + TICK_S  # to its slot: up to half the interval early or 5 s late, and the tick
        at = after + due
        # The pass is due at a whole tick (passes due together run together), measured on the monotonic clock.
        assert abs(at / TICK_S - round(at / TICK_S)) < (after - before + 1e-6) / TICK_S + 1e-6
    b = scheduler.next_delay("b")
    assert b is not None and 150 <= b <= 305 + TICK_S  # the default interval
    fast = scheduler.next_delay("fast")
    assert fast is not None and 1 - 1e-6 <= fast <= 3 + 0.2 + 1e-6  # jitter at most half the interval, tick a tenth


def test_a_batch_s_next_passes_are_each_its_own(tmp_path: Path) -> None:
    """next_delays() of passes that ended together: each its interval toward its own slot on the tick, None for a
    name that is no target."""
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    scheduler.sync(state(tmp_path / "d", {"a": "60s", "fast": "2s"}))
    for _ in range(100):
        delays = scheduler.next_delays(["a", "fast", "gone"])
        assert delays.keys() == {"a", "fast", "gone"} and delays["gone"] is None
        a, fast = delays["a"], delays["fast"]
        assert a is not None and 30 <= a <= 65 + TICK_S
        assert fast is not None and 1 - 1e-6 <= fast <= 3 + 0.2 + 1e-6


def test_a_target_no_longer_desired_has_no_next_pass(tmp_path: Path) -> None:
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    scheduler.sync(state(tmp_path / "d", {"a": "60s"}))
    added, removed = scheduler.sync(state(tmp_path / "e", {"b": "60s"}))
    assert added == {"b"} and removed == {"a"}
    assert scheduler.next_delay("a") is None


def on_slot(name: str, interval: float, wall: float, within: float = 1e-6) -> bool:
    return abs((wall - slot(name, interval) + interval / 2) % interval - interval / 2) <= within


def test_a_target_s_passes_come_to_its_own_second_and_stay_there() -> None:
    """From anywhere, a target's next pass is on its slot, or the one after: each gap between half an interval and
    the interval plus the jitter. On its slot, every gap is the interval; a pass made late (a busy moment) is
    followed by one that much early, and a pass brought forward by a watch comes back to the slot."""
    interval, jitter = 60.0, 5.0
    for name in ("a", "pay-prod", "t00042"):
        home = slot(name, interval)
        assert 0 <= home < interval and home == slot(name, interval)
        starts = [0.0, 13.7, 1_764_000_000.25, home + 0.5, home + 3, home - 0.2]
        starts += [home + k * interval / 16 for k in range(16)]  # every part of the interval
        for start in starts:
            wall, passes = start, 0
            while not on_slot(name, interval, wall):
                gap = toward_slot(name, interval, jitter, wall)
                assert interval / 2 <= gap <= interval + jitter
                wall += gap
                passes += 1
            assert passes <= 2, (name, start)
            assert toward_slot(name, interval, jitter, wall) == pytest.approx(interval)  # and there it stays
            late = toward_slot(name, interval, jitter, wall + 7.5)  # a pass that ended 7.5 s after its slot
            assert late == pytest.approx(interval - 7.5)  # the next starts an interval after the last one did
        assert toward_slot(name, interval, 0.0, 5.0) == interval  # no jitter: the interval, as before


def test_a_slow_pass_still_comes_to_its_slot() -> None:
    """Passes that each take a while (a slow read, here 4 s, more than the half of the jitter the step to half an
    interval keeps to spare) come to their slot within three, and then start an interval apart, the next pass due
    when the slot comes again."""
    interval, jitter, took = 60.0, 5.0, 4.0
    for k in range(200):
        name, wall, passes = f"slow{k}", 1_764_000_000.0 + k * 0.37, 0
        start = wall
        while not on_slot(name, interval, start):
            start = wall + toward_slot(name, interval, jitter, wall)
            wall = start + took
            passes += 1
        assert passes <= 3
        for _ in range(5):
            following = wall + toward_slot(name, interval, jitter, wall)
            assert following - start == pytest.approx(interval)
            start, wall = following, following + took


def test_passes_that_fell_due_together_spread_over_the_interval() -> None:
    """10,000 passes that ended in the same second (a start, the end of a first cycle, a take-over) are spread
    evenly over the interval by the second pass after, at most two passes early each, and no gap is longer than
    the interval and the jitter: the busiest second of the interval then holds about what an even spread gives
    it, where it held all of them. A random jitter alone does not spread them so even after 48 passes."""
    interval, jitter = 60.0, 5.0
    start = 1_764_000_000.0
    ends = {f"t{i:05}": start for i in range(10_000)}
    early = dict.fromkeys(ends, 0)
    rng, jittered = random.Random(8), dict(ends)
    for _ in range(48):
        for name, wall in jittered.items():
            jittered[name] = wall + interval + rng.uniform(0, jitter)
    for _ in range(2):
        for name, wall in ends.items():
            gap = toward_slot(name, interval, jitter, wall)
            assert interval / 2 <= gap <= interval + jitter
            early[name] += gap < interval - 1e-6
            ends[name] = wall + gap
    assert all(on_slot(name, interval, wall) for name, wall in ends.items())
    assert max(early.values()) <= 2  # two early gaps at most: half an interval and more, then the slot
    per_second = [0] * int(interval)
    for wall in ends.values():
        per_second[int(wall % interval)] += 1
    even = len(ends) / interval
    assert max(per_second) < 1.5 * even and min(per_second) > 0.5 * even, per_second
    random_walk = [0] * int(interval)
    for wall in jittered.values():
        random_walk[int(wall % interval)] += 1
    assert max(random_walk) > 2 * even, random_walk
