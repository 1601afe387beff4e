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
from reconciler.runtime import scheduler as scheduling
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
        assert 60 - TICK_S - 0.01 <= due <= 65 + TICK_S  # interval, up to 5 s toward its slot, a tick either way
        at = after + due
        # The pass is due at a whole tick (passes due together run together), measured on the monotonic clock.
        assert abs(at / TICK_S - round(at / TICK_S)) < (after - before + 1e-6) / TICK_S + 1e-6
    b = scheduler.next_delay("b")
    assert b is not None and 300 - TICK_S <= b <= 305 + TICK_S  # the default interval
    fast = scheduler.next_delay("fast")
    assert (
        fast is not None and 2 - 0.2 - 1e-6 <= fast <= 3 + 0.2 + 1e-6
    )  # jitter at most half the interval, tick a tenth


def test_a_batch_s_next_passes_are_each_its_own(tmp_path: Path) -> None:
    """next_delays() of passes that ended together: each its interval toward its own slot on the tick, None for a
    name that is no target."""
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    scheduler.sync(state(tmp_path / "d", {"a": "60s", "fast": "2s"}))
    for _ in range(100):
        delays = scheduler.next_delays(["a", "fast", "gone"])
        assert delays.keys() == {"a", "fast", "gone"} and delays["gone"] is None
        a, fast = delays["a"], delays["fast"]
        assert a is not None and 60 - TICK_S - 0.01 <= a <= 65 + TICK_S
        assert fast is not None and 2 - 0.2 - 0.01 <= fast <= 3 + 0.2 + 1e-6


def test_a_target_no_longer_desired_has_no_next_pass(tmp_path: Path) -> None:
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    scheduler.sync(state(tmp_path / "d", {"a": "60s"}))
    added, removed = scheduler.sync(state(tmp_path / "e", {"b": "60s"}))
    assert added == {"b"} and removed == {"a"}
    assert scheduler.next_delay("a") is None


def test_a_target_s_passes_come_to_its_own_second_and_stay_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """From anywhere, a target's passes come to its slot within a few times interval / jitter passes, each gap
    between the interval less a tick and the interval plus the jitter; on its slot, every gap is the interval. A
    pass made late (a busy moment) comes back to it, and a pass brought forward by a watch too."""
    monkeypatch.setattr(scheduling, "_random", random.Random(7))
    interval, jitter, tick = 60.0, 5.0, 1.0
    for name in ("a", "pay-prod", "t00042"):
        home = slot(name, interval)
        assert 0 <= home < interval and home == slot(name, interval)
        for start in (0.0, 13.7, 1_764_000_000.25, home + 0.5, home + 3, home - 0.2):
            wall, gaps = start, []
            for _ in range(4 * int(interval / jitter)):
                gap = toward_slot(name, interval, jitter, tick, wall)
                assert interval - tick <= gap <= interval + jitter
                gaps.append(gap)
                wall += gap
            assert abs((wall - home + interval / 2) % interval - interval / 2) < 1e-6  # on its slot
            assert toward_slot(name, interval, jitter, tick, wall) == interval  # and there it stays
        assert toward_slot(name, interval, 0.0, tick, 5.0) == interval  # no jitter: the interval, as before


def test_passes_that_fell_due_together_spread_over_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 passes that ended in the same second (a start, a take-over) are spread evenly over the interval
    within a few times interval / jitter passes each, and no gap is longer than the interval and the jitter: the
    busiest second of the interval then holds about what an even spread gives it, where it held all of them.
    A random jitter alone does not spread them so: its busiest second still holds over twice as many."""
    monkeypatch.setattr(scheduling, "_random", random.Random(7))
    interval, jitter, tick = 60.0, 5.0, 1.0
    start = 1_764_000_000.0
    ends = {f"t{i:05}": start for i in range(10_000)}
    rng, jittered = random.Random(8), dict(ends)
    for _ in range(4 * int(interval / jitter)):
        for name, wall in jittered.items():
            jittered[name] = wall + interval + rng.uniform(0, jitter)
        for name, wall in ends.items():
            gap = toward_slot(name, interval, jitter, tick, wall)
            assert gap <= interval + jitter
            ends[name] = wall + gap
    per_second = [0] * int(interval)
    for wall in ends.values():
        per_second[int(wall % interval)] += 1
    even = len(ends) / interval
    assert max(per_second) < 1.5 * even and min(per_second) > 0.5 * even, per_second
    random_walk = [0] * int(interval)
    for wall in jittered.values():
        random_walk[int(wall % interval)] += 1
    assert max(random_walk) > 2 * even, random_walk
