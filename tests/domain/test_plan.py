"""Actions: the idempotency key's format, and what a change of state keeps."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from reconciler.domain.manifest import DriftOp
from reconciler.domain.paths import MISSING
from reconciler.domain.plan import Action, ActionState

# Keys as the journal has stored them since the first version (computed by the implementation before the
# planning of 100,000-key passes was made cheaper): a key computed now must equal one stored then.
STORED = [
    (
        ("payments/prod", ("db", "pool~size", "a/b"), {"x": [1, 2.5, None, True]}, 'é"q', "v" * 64),
        "248814da92b2ec577beb4692c480b54a",
    ),
    (("app", ("k",), 7, MISSING, "v1"), "d4137a22387b988515d8be67b00d926c"),
    (("app", ("k",), MISSING, None, "v1"), "68784284943ef419d15f5f29b02d9ce1"),
]


@pytest.mark.parametrize(("fields", "stored"), STORED)
def test_idempotency_key_keeps_the_stored_format(fields: tuple[Any, ...], stored: str) -> None:
    """The key of the same target, path, before, after and desired version is the one earlier versions stored."""
    target, path, before, after, version = fields
    action = Action("a1", "r1", target, path, DriftOp.CHANGE, before, after, version, "why")
    assert action.idempotency_key == stored


def test_idempotency_key_is_the_documented_digest() -> None:
    """SHA-256 of target, pointer, canonical before and after (`~missing` for none) and version, 0x1F apart."""
    action = Action("a1", "r1", "app", ("a", "b"), DriftOp.ADD, MISSING, {"z": 1, "a": "é"}, "v9", "why")
    material = "\x1f".join(
        ("app", "/a/b", "~missing", json.dumps({"a": "é", "z": 1}, ensure_ascii=False, separators=(",", ":")), "v9")
    )
    assert action.idempotency_key == hashlib.sha256(material.encode()).hexdigest()[:32]


def test_a_new_state_keeps_key_and_pointer() -> None:
    """with_state changes state and error only; an action with another id but the same change has the same key."""
    action = Action("a1", "r1", "app", ("a~b", "c/d"), DriftOp.CHANGE, 1, 2, "v1", "why")
    moved = action.with_state(ActionState.FAILED, "boom")
    assert (moved.state, moved.error) == (ActionState.FAILED, "boom")
    assert (moved.idempotency_key, moved.pointer, moved.id, moved.path) == (
        action.idempotency_key,
        "/a~0b/c~1d",
        "a1",
        ("a~b", "c/d"),
    )
    other = Action("a2", "r2", "app", ("a~b", "c/d"), DriftOp.CHANGE, 1, 2, "v1", "another reason")
    assert other.idempotency_key == action.idempotency_key
