"""The Assessor's bulk check: which targets of a batch need a full look, from one bulk read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.domain import fingerprint
from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.observed import Observed
from reconciler.domain.policy import Policy
from reconciler.domain.run import Mode
from reconciler.domain.state import DesiredState
from reconciler.engine import assess
from reconciler.engine.assess import Assessor
from reconciler.errors import DiscoveryError
from reconciler.ports import Capabilities

NOW = datetime(2026, 11, 22, tzinfo=UTC)


class Memory:
    """Live documents as bytes; reads in bulk unless told otherwise, and counts every read."""

    capabilities = Capabilities(read=True)

    def __init__(self) -> None:
        self.raw: dict[str, bytes] = {}
        self.discovered: list[str] = []
        self.bulk_error: Exception | None = None
        self.unreadable: set[str] = set()

    def discover(self, target: Target) -> Observed:
        self.discovered.append(target.name)
        data = self.raw[target.name]
        return Observed(fingerprint.of_bytes(data), target.name, parse=lambda: json.loads(data))

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        if self.bulk_error is not None:
            raise self.bulk_error
        return {name: fingerprint.of_bytes(self.raw[name]) for name in targets if name not in self.unreadable}

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return desired


class NoBulk(Memory):
    fingerprints = None  # type: ignore[assignment]


def state_of(count: int, *, digest: str = "a" * 64, expires: str = "2027-01-01", desired: Any = None) -> DesiredState:
    targets = {}
    for i in range(count):
        name = f"svc-{i}"
        targets[name] = Target.model_validate(
            {
                "kind": "Target",
                "metadata": {"name": name, "environment": "prod"},
                "spec": {"source": {"adapter": "memory"}, "desired": desired or {"a": 1, "b": "x"}},
            }
        )
    policy = Policy.model_validate(
        {
            "kind": "Policy",
            "metadata": {"name": "p"},
            "spec": {
                "default": "reversible",
                "rules": [{"match": {"paths": ["/b"]}, "class": "escalate", "reason": "r"}],
                "exceptions": [
                    {"targets": ["svc-1"], "paths": ["/a"], "reason": "r", "owner": "o", "expires": expires}
                ],
            },
        }
    )
    return DesiredState(Path("."), DesiredVersion(digest), targets, (policy,))


def stale(
    assessor: Assessor, state: DesiredState, adapter: Any, mode: Mode = Mode.DRY_RUN, now: datetime = NOW
) -> set[str]:
    return assessor.stale(state, state.targets, assessor.fingerprints(adapter, state.targets), mode, now)


def look(
    assessor: Assessor, state: DesiredState, adapter: Memory, mode: Mode = Mode.DRY_RUN, now: datetime = NOW
) -> set[str]:
    """One cycle: the bulk check, then a full look at (and memo of) every stale target."""
    names = stale(assessor, state, adapter, mode, now)
    for name in names:
        assessor.remember(name, assessor.assess(state, state.targets[name], adapter, mode, now))
    return names


@pytest.fixture
def fleet() -> tuple[DesiredState, Memory]:
    state = state_of(5)
    adapter = Memory()
    for name in state.targets:
        adapter.raw[name] = json.dumps({"a": 1, "b": "x"}).encode()
    adapter.raw["svc-2"] = json.dumps({"a": 2, "b": "x"}).encode()  # standing drift
    return state, adapter


def test_only_changed_targets_are_stale_and_read(fleet: tuple[DesiredState, Memory]) -> None:
    state, adapter = fleet
    assessor = Assessor(b"k")
    assert look(assessor, state, adapter) == set(state.targets)  # nothing remembered yet
    adapter.discovered.clear()
    assert look(assessor, state, adapter) == set()
    assert adapter.discovered == []  # unchanged targets are not read one by one
    memo = assessor.remembered(state.targets["svc-2"], state, Mode.DRY_RUN, NOW)
    assert memo is not None and memo.unchanged and [i.pointer for i in memo.comparison.items] == ["/a"]

    adapter.raw["svc-3"] = json.dumps({"a": 1, "b": "y"}).encode()
    assert look(assessor, state, adapter) == {"svc-3"}
    assert adapter.discovered == ["svc-3"]
    assessor.forget("svc-4")
    assert look(assessor, state, adapter) == {"svc-4"}


def test_a_new_version_another_mode_or_an_expiry_makes_targets_stale(fleet: tuple[DesiredState, Memory]) -> None:
    state, adapter = fleet
    assessor = Assessor(b"k")
    look(assessor, state, adapter)
    assert stale(assessor, state, adapter, Mode.APPLY, NOW) == set(state.targets)
    newer = state_of(5, digest="b" * 64)
    assert stale(assessor, newer, adapter, Mode.DRY_RUN, NOW) == set(newer.targets)
    look(assessor, newer, adapter)
    # the old version's memos are gone from the index once the new one's are remembered
    assert stale(assessor, state, adapter, Mode.DRY_RUN, NOW) == set(state.targets)
    # svc-1's exception expires on 2027-01-01: from then on its classes may change, the others' cannot
    later = datetime(2027, 1, 2, tzinfo=UTC)
    assert stale(assessor, newer, adapter, Mode.DRY_RUN, later) == {"svc-1"}
    assert assessor.remembered(newer.targets["svc-1"], newer, Mode.DRY_RUN, later) is None
    assert assessor.remembered(newer.targets["svc-0"], newer, Mode.DRY_RUN, later) is not None
    assert assessor.remembered(newer.targets["svc-0"], state, Mode.DRY_RUN, NOW) is None  # another version
    assert assessor.remembered(newer.targets["svc-0"], newer, Mode.APPLY, NOW) is None


def test_escalations_in_apply_mode_and_secrets_are_always_looked_at(tmp_path: Path) -> None:
    """Apply mode looks at escalated drift in full (an approval may have come); a target with secret
    references is checked by assess, which resolves them (a fingerprint alone cannot tell)."""
    state = state_of(3)
    adapter = Memory()
    for name in state.targets:
        adapter.raw[name] = json.dumps({"a": 1, "b": "x"}).encode()
    adapter.raw["svc-0"] = json.dumps({"a": 1, "b": "escalated"}).encode()
    assessor = Assessor(b"k")
    look(assessor, state, adapter, Mode.APPLY)
    assert look(assessor, state, adapter, Mode.APPLY) == {"svc-0"}

    secret = tmp_path / "pw"
    secret.write_text("hunter2")
    refs = state_of(2, desired={"a": 1, "b": f"${{file:{secret}}}"})
    adapter.raw.update({n: json.dumps({"a": 1, "b": "hunter2"}).encode() for n in refs.targets})
    assessor = Assessor(b"k", [tmp_path])
    look(assessor, refs, adapter)
    assert look(assessor, refs, adapter) == set(refs.targets)
    assert all(assessor.assess(refs, t, adapter, Mode.DRY_RUN, NOW).unchanged for t in refs.targets.values())


def test_no_bulk_read_leaves_every_target_to_its_own_read(fleet: tuple[DesiredState, Memory]) -> None:
    state, adapter = fleet
    assessor = Assessor(b"k")
    look(assessor, state, adapter)
    assert stale(assessor, state, NoBulk(), Mode.DRY_RUN, NOW) == set(state.targets)
    adapter.bulk_error = DiscoveryError("etcd: cannot reach etcd")
    assert stale(assessor, state, adapter, Mode.DRY_RUN, NOW) == set(state.targets)
    adapter.bulk_error = None
    adapter.unreadable = {"svc-0"}
    assert stale(assessor, state, adapter, Mode.DRY_RUN, NOW) == {"svc-0"}


def test_a_secret_reference_at_a_key_with_glob_characters_hides_only_that_key(tmp_path: Path) -> None:
    """A reference at the key `a*` makes that key secret, not its sibling `abc` (which a glob `/a*` would)."""
    secret = tmp_path / "pw"
    secret.write_text("hunter2")
    refs = state_of(1, desired={"a*": f"${{file:{secret}}}", "abc": 1})
    adapter = Memory()
    adapter.raw["svc-0"] = json.dumps({"a*": "hunter2", "abc": 2}).encode()
    found = Assessor(b"k", [tmp_path]).assess(refs, refs.targets["svc-0"], adapter, Mode.DRY_RUN, NOW)
    assert [(i.pointer, i.desired, i.observed, i.secret) for i in found.comparison.items] == [("/abc", 1, 2, False)]


def test_across_versions_only_targets_whose_manifest_changed_are_stale(fleet: tuple[DesiredState, Memory]) -> None:
    """With the policies as the basis, a new desired version that keeps a target's manifest object keeps its
    memo; a target given a new manifest is looked at in full, and so is every target when the policies change."""
    state, adapter = fleet
    assessor = Assessor(b"k")
    basis = assess.basis(state, across_versions=True)
    look(assessor, state, adapter)
    for name, target in state.targets.items():
        assessor.remember(name, assessor.assess(state, target, adapter, Mode.DRY_RUN, NOW, basis))
    edited = state_of(1, digest="c" * 64, desired={"a": 1, "b": "z"}).targets["svc-0"]
    newer = DesiredState(Path("."), DesiredVersion("b" * 64), {**state.targets, "svc-0": edited}, state.policies)
    assert assess.basis(newer, across_versions=True) == basis != assess.basis(newer, across_versions=False)
    seen = assessor.fingerprints(adapter, newer.targets)
    assert assessor.stale(newer, newer.targets, seen, Mode.DRY_RUN, NOW, basis) == set()  # fingerprints alike
    assert assessor.remembered(edited, newer, Mode.DRY_RUN, NOW, basis) is None  # but its manifest is new
    assert not assessor.assess(newer, edited, adapter, Mode.DRY_RUN, NOW, basis).unchanged
    kept = newer.targets["svc-3"]
    assert assessor.remembered(kept, newer, Mode.DRY_RUN, NOW, basis) is not None
    assert assessor.assess(newer, kept, adapter, Mode.DRY_RUN, NOW, basis).unchanged
    stricter = state_of(5, expires="2028-01-01")
    assert assess.basis(stricter, across_versions=True) != basis
