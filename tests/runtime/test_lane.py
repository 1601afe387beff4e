"""Which of a batch's targets take the lane (runtime/workers.py): those whose adapter stays on this host."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.state import DesiredState
from reconciler.runtime.workers import Workers


def _target(name: str, adapter: str) -> Target:
    return Target.model_validate(
        {
            "kind": "Target",
            "metadata": {"name": name, "environment": "prod"},
            "spec": {"source": {"adapter": adapter}, "desired": {}},
        }
    )


def _workers(targets: dict[str, str], local: dict[str, bool | None]) -> tuple[Workers, list[str]]:
    """Workers over a desired state of `targets` (name: adapter), whose adapters are local or not (None: one that
    cannot be built); and the adapters built, in order."""
    state = DesiredState(
        root=Path("."),
        version=DesiredVersion(digest="d" * 64),
        targets={name: _target(name, adapter) for name, adapter in targets.items()},
    )
    built: list[str] = []

    def adapters(name: str) -> Any:
        built.append(name)
        if local[name] is None:
            raise RuntimeError(f"adapter {name} cannot be built")
        return SimpleNamespace(capabilities=SimpleNamespace(local=local[name]))

    components = SimpleNamespace(reconciler=SimpleNamespace(desired=lambda: state), adapters=adapters)
    return Workers(components, *([None] * 5)), built  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [True, False])
def test_a_desired_state_of_one_kind_of_adapter_takes_the_lane_for_all_of_its_targets_or_none(kind: bool) -> None:
    workers, built = _workers({"a": "file", "b": "file", "c": "process"}, {"file": kind, "process": kind})
    assert workers.local(["a", "b", "c", "gone"]) == ({"a", "b", "c"} if kind else set())
    assert workers.local(["c"]) == ({"c"} if kind else set())
    assert sorted(built) == ["file", "process"]  # each adapter asked once, however many batches


def test_a_desired_state_of_both_kinds_sends_only_the_local_targets_to_the_lane() -> None:
    workers, built = _workers(
        {"a": "file", "b": "consul", "c": "broken", "d": "file"}, {"file": True, "consul": False, "broken": None}
    )
    assert workers.local(["a", "b", "c", "d", "gone"]) == {"a", "d"}
    assert workers.local(["b", "c"]) == set()
    assert sorted(built) == ["broken", "consul", "file"]  # once each per desired version, the broken one too


def test_an_adapter_that_cannot_be_built_is_not_local_and_is_tried_again_with_the_next_version() -> None:
    workers, built = _workers({"a": "file", "b": "typo"}, {"file": True, "typo": None})
    assert workers.local(["a", "b"]) == {"a"}
    assert workers.local(["a"]) == {"a"} and built.count("typo") == 1  # not rebuilt for every batch
    state = workers.c.reconciler.desired()
    newer = DesiredState(root=state.root, version=DesiredVersion(digest="e" * 64), targets=dict(state.targets))
    workers.c.reconciler.desired = lambda: newer  # type: ignore[method-assign]
    assert workers.local(["a", "b"]) == {"a"} and built.count("typo") == 2


@pytest.mark.parametrize(
    ("adapters", "local", "among"),
    [
        ({"a": "file", "b": "process"}, {"file": True, "process": True}, 1),  # all take the lane: one at a time
        ({"a": "file", "b": "consul"}, {"file": True, "consul": False}, 4),  # remote reads overlap: a share each
        ({"a": "consul"}, {"consul": False}, 4),
        ({"a": "file", "b": "typo"}, {"file": True, "typo": None}, 4),  # one that cannot be built is not local
    ],
)
def test_workers_split_what_is_ready_unless_every_target_takes_the_lane(
    adapters: dict[str, str], local: dict[str, bool | None], among: int
) -> None:
    workers, _ = _workers(adapters, local)
    workers.threads = [SimpleNamespace()] * 4  # type: ignore[list-item]
    assert workers.sharing() == among
