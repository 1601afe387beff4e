"""Long loops pause every so often, and give the same items with or without a pause."""

from __future__ import annotations

from reconciler.domain.pacing import paced


def test_a_pause_comes_before_every_step_th_item_and_the_items_are_unchanged() -> None:
    taken: list[int] = []
    pauses: list[int] = []  # how many items had been taken at each pause
    for item in paced(range(10), lambda: pauses.append(len(taken)), step=4):
        taken.append(item)
    assert taken == list(range(10))
    assert pauses == [0, 4, 8]


def test_without_a_pause_the_items_pass_through() -> None:
    assert list(paced(iter("abc"), None)) == ["a", "b", "c"]
    assert list(paced([], lambda: None)) == []
