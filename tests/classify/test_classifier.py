from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.classify.classifier import classify, explain
from reconciler.classify.exceptions import inventory
from reconciler.desired.loader import load
from reconciler.domain.drift import DriftItem
from reconciler.domain.manifest import DriftClass, DriftOp
from reconciler.domain.paths import from_pointer

TARGET = """
kind: Target
metadata: {name: api-prod, app: api, environment: prod, labels: {team: core}}
spec:
  source: {adapter: file, path: x.yaml}
  desired: {}
"""


def state_with(tmp_path: Path, policy: str) -> Any:
    (tmp_path / "t.yaml").write_text(TARGET + "---\n" + policy)
    return load(tmp_path)


def item(pointer: str, op: DriftOp = DriftOp.CHANGE) -> DriftItem:
    return DriftItem(from_pointer(pointer), op, 1, 2)


NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def decide(state: Any, pointer: str, now: datetime = NOW, op: DriftOp = DriftOp.CHANGE) -> tuple[str, str]:
    (result,) = classify(state.targets["api-prod"], [item(pointer, op)], state, now)
    return result.class_.value, result.decided_by


def test_exception_covers_until_it_expires(tmp_path: Path) -> None:
    """An active exception makes drift acceptable; from the day after its expiry date the rules decide again."""
    state = state_with(
        tmp_path,
        """
kind: Policy
metadata: {name: p}
spec:
  default: reversible
  exceptions:
    - {targets: [api-*], paths: ["/debug"], reason: "INC-1", owner: oncall, expires: 2026-11-30}
""",
    )
    assert decide(state, "/debug") == ("acceptable", "exception p/0")
    assert decide(state, "/debug", datetime(2026, 11, 30, 23, 59, tzinfo=UTC))[0] == "acceptable"
    assert decide(state, "/debug", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)) == ("reversible", "default")
    assert decide(state, "/other") == ("reversible", "default")


def test_first_matching_rule_wins(tmp_path: Path) -> None:
    """Rules are tried in order; the first whose target fields, paths and ops all match decides."""
    state = state_with(
        tmp_path,
        """
kind: Policy
metadata: {name: p}
spec:
  default: reversible
  rules:
    - {match: {environment: staging}, class: acceptable, reason: never matches prod}
    - {match: {labels: {team: core}, paths: ["/db/**"], ops: [add]}, class: acceptable, reason: added db keys}
    - {match: {app: api, environment: [prod, production], paths: ["/db/**"]}, class: escalate, reason: prod db}
    - {match: {paths: ["/db/**"]}, class: acceptable, reason: shadowed}
""",
    )
    assert decide(state, "/db/pool", op=DriftOp.ADD) == ("acceptable", "rule p/1")
    assert decide(state, "/db/pool") == ("escalate", "rule p/2")
    assert decide(state, "/log") == ("reversible", "default")


def test_without_a_default_drift_escalates(tmp_path: Path) -> None:
    """With no policy naming a default class, unmatched drift goes to a person."""
    (tmp_path / "t.yaml").write_text(TARGET)
    assert decide(load(tmp_path), "/x") == ("escalate", "default")


@pytest.mark.parametrize("order", [0, 1])
def test_classification_is_deterministic(tmp_path: Path, order: int) -> None:
    """The same drift and policy always give the same classes, whatever the order of the items."""
    state = state_with(
        tmp_path,
        "kind: Policy\nmetadata: {name: p}\nspec:\n  default: reversible\n  rules:\n"
        "    - {match: {paths: ['/a']}, class: escalate, reason: r}\n",
    )
    items = [item("/a"), item("/b")]
    if order:
        items.reverse()
    result = {c.item.pointer: c.class_ for c in classify(state.targets["api-prod"], items, state, NOW)}
    assert result == {"/a": DriftClass.ESCALATE, "/b": DriftClass.REVERSIBLE}


def test_value_predicates(tmp_path: Path) -> None:
    """within and within_percent match only numeric drift close enough to desired; booleans never."""
    state = state_with(
        tmp_path,
        "kind: Policy\nmetadata: {name: p}\nspec:\n  default: reversible\n  rules:\n"
        "    - {match: {paths: ['/pool'], within_percent: 10}, class: acceptable, reason: close enough}\n"
        "    - {match: {paths: ['/t'], within: 0.5}, class: acceptable, reason: jitter}\n",
    )
    target = state.targets["api-prod"]

    def cls(pointer: str, desired: object, observed: object) -> str:
        (c,) = classify(target, [DriftItem(from_pointer(pointer), DriftOp.CHANGE, desired, observed)], state, NOW)
        return c.class_.value

    assert cls("/pool", 20, 22) == "acceptable"
    assert cls("/pool", 20, 23) == "reversible"
    assert cls("/pool", 20, 19.0) == "acceptable"
    assert cls("/pool", 1, True) == "reversible"
    assert cls("/pool", "20", "21") == "reversible"
    assert cls("/t", 1.0, 1.4) == "acceptable"
    assert cls("/t", 1.0, 1.6) == "reversible"


def test_explain_shows_every_candidate_in_order(tmp_path: Path) -> None:
    """explain lists the exceptions and rules tried, why each missed, and ends on the decision classify made."""
    state = state_with(
        tmp_path,
        """
kind: Policy
metadata: {name: p}
spec:
  default: reversible
  rules:
    - {match: {environment: staging}, class: acceptable, reason: staging is loose}
    - {match: {paths: ["/db/**"]}, class: escalate, reason: databases need a human}
  exceptions:
    - {targets: [api-prod], paths: ["/db/pool"], reason: "INC-1", owner: oncall, expires: 2026-01-01, ticket: INC-1}
""",
    )
    target = state.targets["api-prod"]
    steps = explain(target, item("/db/pool"), state, NOW)
    assert [(s.candidate, s.matched) for s in steps] == [
        ("exception p/0", False),
        ("rule p/0", False),
        ("rule p/1", True),
    ]
    assert "expired 2026-01-01 " in steps[0].why  # as written: the date is inclusive
    assert "environment prod is not one of ['staging']" in steps[1].why
    (decided,) = classify(target, [item("/db/pool")], state, NOW)
    assert (decided.class_, decided.decided_by) == (steps[-1].class_, steps[-1].candidate)


def test_exception_inventory(tmp_path: Path) -> None:
    """Exceptions are active, expiring within the horizon, or expired; soonest first."""
    state = state_with(
        tmp_path,
        """
kind: Policy
metadata: {name: p}
spec:
  exceptions:
    - {targets: [a], paths: ["/x"], reason: r, owner: o, expires: 2027-06-01}
    - {targets: [a], paths: ["/y"], reason: r, owner: o, expires: 2026-11-25}
    - {targets: [a], paths: ["/z"], reason: r, owner: o, expires: 2026-11-01}
""",
    )
    found = [(s.id, s.state.value) for s in inventory(state, NOW, timedelta(days=7))]
    assert found == [("p/2", "expired"), ("p/1", "expiring"), ("p/0", "active")]


@settings(max_examples=60, deadline=None)
@given(st.permutations(["/db/pool", "/db/host", "/log", "/debug", "/feature/x", "/feature/y"]))
def test_classes_do_not_depend_on_item_order(tmp_path_factory: pytest.TempPathFactory, order: list[str]) -> None:
    """Any order of the same drift items gives each item the same class and the same deciding candidate."""
    folder = tmp_path_factory.mktemp("policy")
    state = state_with(
        folder,
        "kind: Policy\nmetadata: {name: p}\nspec:\n  default: reversible\n  rules:\n"
        "    - {match: {paths: ['/db/**']}, class: escalate, reason: db}\n"
        "    - {match: {paths: ['/feature/*'], ops: [change]}, class: acceptable, reason: flags}\n"
        "  exceptions:\n    - {targets: ['*'], paths: ['/debug'], reason: r, owner: o, expires: 2030-01-01}\n",
    )
    target = state.targets["api-prod"]
    result = {
        c.item.pointer: (c.class_.value, c.decided_by) for c in classify(target, [item(p) for p in order], state, NOW)
    }
    assert result == {
        "/db/pool": ("escalate", "rule p/0"),
        "/db/host": ("escalate", "rule p/0"),
        "/log": ("reversible", "default"),
        "/debug": ("acceptable", "exception p/0"),
        "/feature/x": ("acceptable", "rule p/1"),
        "/feature/y": ("acceptable", "rule p/1"),
    }
