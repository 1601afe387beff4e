"""Classify drift: an active exception first, then the first matching rule, then the policy default.

`classify` and `explain` share one evaluation, so the explanation is always the decision that was made.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.domain.drift import Classified, DriftItem
from reconciler.domain.manifest import DriftClass, Target
from reconciler.domain.paths import MISSING, any_match
from reconciler.domain.policy import PolicyException, RuleMatch
from reconciler.domain.state import DesiredState


@dataclass(frozen=True, slots=True)
class Step:
    """One candidate looked at while classifying a drift item, and why it did or did not decide."""

    candidate: str  # "exception default/0", "rule default/2", "default"
    matched: bool
    why: str
    class_: DriftClass | None = None


def classify(target: Target, items: Iterable[DriftItem], state: DesiredState, now: datetime) -> list[Classified]:
    """Give every drift item of `target` its class, the reason, and what decided it."""
    exceptions = [
        (policy, index, exc)
        for policy, index, exc in state.exceptions()
        if exc.expires > now and _names_match(exc.targets, target.name)
    ]
    rules = [(policy, index, rule) for policy, index, rule in state.rules() if _target_matches(rule.match, target)]
    default = state.default_class()
    result = []
    for item in items:
        for policy, index, exc in exceptions:
            if any_match(exc.paths, item.path):
                reason = f"{exc.reason} (owner {exc.owner}, expires {exc.expires_text})"
                result.append(Classified(item, DriftClass.ACCEPTABLE, reason, f"exception {policy}/{index}"))
                break
        else:
            for policy, index, rule in rules:
                if _item_matches(rule.match, item) is None:
                    result.append(Classified(item, rule.class_, rule.reason, f"rule {policy}/{index}"))
                    break
            else:
                result.append(Classified(item, default, "no rule matched: policy default", "default"))
    return result


def explain(target: Target, item: DriftItem, state: DesiredState, now: datetime) -> list[Step]:
    """Every exception and rule in the order classify tries them, with why each one did or did not decide;
    the last step is the decision."""
    return list(_steps(target, item, state, now))


def _steps(target: Target, item: DriftItem, state: DesiredState, now: datetime) -> Iterator[Step]:
    for policy, index, exc in state.exceptions():
        name = f"exception {policy}/{index}"
        if not _names_match(exc.targets, target.name):
            yield Step(name, False, f"targets {exc.targets} do not name {target.name}")
        elif not any_match(exc.paths, item.path):
            yield Step(name, False, f"paths {[str(p) for p in exc.paths]} do not cover {item.pointer}")
        elif exc.expires <= now:
            yield Step(name, False, f"expired {exc.expires_text} (owner {exc.owner}: {exc.reason})")
        else:
            why = f"{exc.reason} (owner {exc.owner}, expires {exc.expires_text}{_intent(exc)})"
            yield Step(name, True, why, DriftClass.ACCEPTABLE)
            return
    for policy, index, rule in state.rules():
        name = f"rule {policy}/{index}"
        miss = _target_miss(rule.match, target) or _item_matches(rule.match, item)
        if miss is not None:
            yield Step(name, False, miss)
        else:
            yield Step(name, True, rule.reason, rule.class_)
            return
    yield Step("default", True, "no exception or rule matched", state.default_class())


def _intent(exc: PolicyException) -> str:
    parts = [f"ticket {exc.ticket}" if exc.ticket else "", f"purpose: {exc.purpose}" if exc.purpose else ""]
    if exc.stakeholders:
        parts.append("stakeholders " + ", ".join(exc.stakeholders))
    return "".join(f"; {p}" for p in parts if p)


def _names_match(patterns: list[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _target_matches(match: RuleMatch, target: Target) -> bool:
    return _target_miss(match, target) is None


def _target_miss(match: RuleMatch, target: Target) -> str | None:
    """Why the target-level part of a rule does not match, or None when it does."""
    meta = target.metadata
    if match.targets and not _names_match(match.targets, target.name):
        return f"targets {match.targets} do not name {target.name}"
    if match.environment and not _names_match(match.environment, meta.environment):
        return f"environment {meta.environment} is not one of {match.environment}"
    if match.app and (meta.app is None or not _names_match(match.app, meta.app)):
        return f"app {meta.app} is not one of {match.app}"
    for key, value in match.labels.items():
        if meta.labels.get(key) != value:
            return f"label {key}={meta.labels.get(key)} is not {value}"
    return None


def _item_matches(match: RuleMatch, item: DriftItem) -> str | None:
    """Why the item-level part of a rule (paths, ops, value predicates) does not match, or None."""
    if match.paths and not any_match(match.paths, item.path):
        return f"paths {[str(p) for p in match.paths]} do not cover {item.pointer}"
    if match.ops and item.op not in match.ops:
        return f"op {item.op.value} is not one of {[o.value for o in match.ops]}"
    if match.within is not None or match.within_percent is not None:
        d, o = _number(item.desired), _number(item.observed)
        if d is None or o is None:
            return "a value predicate needs two numbers"
        gap = abs(o - d)
        if match.within is not None and gap > match.within:
            return f"live differs from desired by {gap:g}, more than {match.within:g}"
        if match.within_percent is not None and gap > abs(d) * match.within_percent / 100:
            return f"live differs from desired by {gap:g}, more than {match.within_percent:g}% of {d:g}"
    return None


def _number(value: Any) -> float | None:
    if value is MISSING or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
