from __future__ import annotations

import threading
import time

from reconciler.runtime.queue import WorkQueue


def test_a_name_is_queued_once() -> None:
    """Adding a queued name again does not queue it twice."""
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert {queue.get(0.1), queue.get(0.1)} == {"a", "b"}
    assert queue.get(0.05) is None


def test_a_name_being_worked_is_not_handed_out_again_but_rerun_after() -> None:
    """While a name is worked nobody else gets it; an add meanwhile queues exactly one more pass after."""
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0.1) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(0.05) is None
    queue.done("a")
    assert queue.get(0.1) == "a"
    queue.done("a")
    assert queue.get(0.05) is None


def test_delays_and_earlier_adds() -> None:
    """A delayed name is handed out when due; an earlier add for the same name wins."""
    queue = WorkQueue()
    queue.add("a", delay_s=10)
    assert queue.get(0.05) is None
    queue.add("a", delay_s=0)
    assert queue.get(0.1) == "a"


def test_backoff_grows_and_resets() -> None:
    """Each failure doubles the delay up to the cap; success forgets it."""
    queue = WorkQueue(backoff_base_s=1, backoff_max_s=4)
    delays = []
    for _ in range(5):
        delays.append(queue.add_rate_limited("a"))
        assert queue.get(0) is None
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2 and 2 <= delays[4] <= 4
    queue.forget("a")
    assert queue.add_rate_limited("a") <= 1


def test_close_wakes_waiting_workers() -> None:
    """close() releases every worker blocked in get()."""
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    time.sleep(0.05)
    queue.close()
    worker.join(2)
    assert not worker.is_alive() and got == [None]


def test_take_ready_takes_only_what_is_due_now_up_to_a_limit() -> None:
    """A worker's batch: names ready now, at most `limit`, marked as worked; later ones stay queued, a name
    queued again for sooner is taken once, and a closed queue hands out nothing."""
    queue = WorkQueue()
    for name in "abcd":
        queue.add(name)
    queue.add("later", 60)
    queue.add("e", 60)
    queue.add("e")  # sooner: its entry for later is superseded
    assert queue.take_ready(3) == ["a", "b", "c"]
    assert queue.working == frozenset("abc")
    assert queue.take_ready(10) == ["d", "e"]
    assert queue.take_ready(10) == [] and len(queue) == 1
    queue.add("a")  # being worked: a pass after this one, not a second worker on it
    assert queue.take_ready(10) == []
    queue.done("a")
    assert queue.take_ready(10) == ["a"]
    queue.close()
    assert queue.take_ready(10) == [] and queue.closed


def test_take_ready_among_workers_takes_a_share_of_what_is_ready_within_its_bounds() -> None:
    """Workers split the names ready together: each takes its share (rounded up), no fewer than `least` and no
    more than `limit`; names not yet due do not count toward a share."""
    queue = WorkQueue()
    for i in range(1000):
        queue.add(f"r{i}")
    for i in range(500):
        queue.add(f"w{i}", 60)
    assert len(queue.take_ready(255, among=4, least=63)) == 250  # a quarter of 1,000
    assert len(queue.take_ready(100, among=2, least=10)) == 100  # 375 would be the share: the limit holds
    assert len(queue.take_ready(255, among=4, least=63)) == 163  # a quarter of the 650 left
    left = queue.take_ready(255, among=16, least=63)
    assert len(left) == 63  # a sixteenth of 487 is 31: at least `least`
    assert len(queue.take_ready(1000, among=1)) == 424  # one taker: everything ready, up to the limit
    assert queue.take_ready(255, among=4, least=63) == [] and queue.due() == 0 and len(queue) == 500


def test_finish_ends_a_batch_and_queues_each_again() -> None:
    """finish() is done(), forget() and add() for each name at once: the backoff is reset, a name added while it
    was worked comes back at the earlier of the two times, and None queues nothing."""
    queue = WorkQueue(backoff_base_s=1, backoff_max_s=4)
    for name in ("a", "b", "c"):
        queue.add(name)
    assert sorted(queue.take_ready(3)) == ["a", "b", "c"]
    queue.add_rate_limited("a")  # it failed once before: finish() forgets that
    queue.add("b")  # a watch woke it meanwhile: it comes back at once, not after its interval
    queue.finish({"a": 60.0, "b": 60.0, "c": None})
    assert queue.working == frozenset()
    assert "a" in queue and "b" in queue and "c" not in queue
    assert queue.get(0.2) == "b"
    assert queue.get(0.05) is None  # a waits for its interval
    assert queue.add_rate_limited("a") <= 1  # its backoff starts again from the base


def test_due_counts_only_names_ready_now() -> None:
    """A name queued for later is queued (len) but not due; it is due once its time has come."""
    queue = WorkQueue()
    queue.add("now")
    queue.add("later", 0.2)
    assert len(queue) == 2 and queue.due() == 1
    time.sleep(0.25)
    assert queue.due() == 2


def test_names_due_in_one_millisecond_come_out_in_the_order_queued_and_once_each() -> None:
    """A bucket keeps the order names were queued in; a name queued again for sooner is handed out once, at the
    sooner time, and its earlier place (even in the very bucket it comes back to) hands out nothing."""
    queue = WorkQueue()
    names = [f"t{i}" for i in range(200)]
    for name in reversed(names):  # later names first: the order queued wins, not the name
        queue.add(name, 0.05)
    queue.add("late", 0.3)
    queue.add("t7", 0.0)  # sooner: its 50 ms place is left behind
    assert queue.get(0.01) == "t7"
    queue.done("t7")
    assert queue.get(0.01) is None  # the others are not due yet
    time.sleep(0.06)
    taken = queue.take_ready(500)
    assert taken == [n for n in reversed(names) if n != "t7"]
    queue.add("late", 0.0)  # handed out now; its 300 ms place must not hand it out a second time
    assert queue.get(0.01) == "late"
    queue.done("late")
    queue.add("late", 60)  # its next pass, after the place left behind
    time.sleep(0.3)
    assert queue.get(0.05) is None and len(queue) == 1 and queue.due() == 0


def test_a_name_is_not_handed_out_before_the_millisecond_of_its_time() -> None:
    """Times are kept to the millisecond, rounded down: at most a millisecond early."""
    queue = WorkQueue()
    due: dict[str, float] = {}
    for i in range(50):
        delay = 0.0203 + i / 10_000
        due[f"n{i}"] = time.monotonic() + delay  # no later than the queue's own reading of the clock
        queue.add(f"n{i}", delay)
    while due and (name := queue.get(1.0)) is not None:
        assert time.monotonic() >= due.pop(name) - 0.001
        queue.done(name)
    assert not due


def test_a_name_left_behind_in_a_bucket_and_queued_again_in_it_is_handed_out_once() -> None:
    """A name whose earlier place is in (or beside) the bucket it is queued in again comes out once."""
    queue = WorkQueue()
    queue.add("x", 0.05)
    queue.add("y", 0.05)
    queue.add("x", 0.0)  # sooner: handed out now, its place in the 50 ms bucket left behind
    assert queue.get(0.01) == "x"
    queue.finish({"x": 0.05 - 0.001})  # its pass ended: back in about the millisecond of its old place
    time.sleep(0.06)
    taken = queue.take_ready(10)
    assert sorted(taken) == ["x", "y"] and len(taken) == 2
    assert queue.take_ready(10) == [] and len(queue) == 0
