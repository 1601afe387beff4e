"""When a target's next pass is due: its interval, jitter, and the tick that lets due passes run together."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from reconciler.desired.loader import load
from reconciler.domain.state import DesiredState
from reconciler.runtime.scheduler import TICK_S, Scheduler


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
        assert 60 - 0.01 <= due <= 65 + TICK_S  # interval, up to 5 s of jitter, up to one tick later
        at = after + due
        # The pass is due at a whole tick (passes due together run together), measured on the monotonic clock.
        assert abs(at / TICK_S - round(at / TICK_S)) < (after - before + 1e-6) / TICK_S + 1e-6
    b = scheduler.next_delay("b")
    assert b is not None and 300 <= b <= 305 + TICK_S  # the default interval
    fast = scheduler.next_delay("fast")
    assert fast is not None and 2 <= fast <= 3 + 0.2 + 1e-6  # jitter at most half the interval, tick a tenth


def test_a_batch_s_next_passes_are_each_its_own(tmp_path: Path) -> None:
    """next_delays() of passes that ended together: each its interval plus jitter on the tick, None for a name
    that is no target."""
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    scheduler.sync(state(tmp_path / "d", {"a": "60s", "fast": "2s"}))
    for _ in range(100):
        delays = scheduler.next_delays(["a", "fast", "gone"])
        assert delays.keys() == {"a", "fast", "gone"} and delays["gone"] is None
        a, fast = delays["a"], delays["fast"]
        assert a is not None and 60 - 0.01 <= a <= 65 + TICK_S
        assert fast is not None and 2 - 0.01 <= fast <= 3 + 0.2 + 1e-6
    assert len({scheduler.next_delays(["a"])["a"] for _ in range(50)}) > 1  # jittered, each on its own


def test_a_target_no_longer_desired_has_no_next_pass(tmp_path: Path) -> None:
    scheduler = Scheduler(default_interval_s=300, jitter_s=5)
    scheduler.sync(state(tmp_path / "d", {"a": "60s"}))
    added, removed = scheduler.sync(state(tmp_path / "e", {"b": "60s"}))
    assert added == {"b"} and removed == {"a"}
    assert scheduler.next_delay("a") is None
