"""Classify drift: an active exception first, then the first matching rule, then the policy default."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import datetime

from reconciler.domain.drift import Classified, DriftItem
from reconciler.domain.manifest import DriftClass, Target
from reconciler.domain.paths import any_match
from reconciler.domain.policy import PolicyException, Rule, RuleMatch
from reconciler.domain.state import DesiredState


def classify(target: Target, items: Iterable[DriftItem], state: DesiredState, now: datetime) -> list[Classified]:
    """Give every drift item of `target` its class, the reason, and what decided it."""
    exceptions = [
        (policy, index, exc)
        for policy, index, exc in state.exceptions()
        if exc.expires > now and _names_match(exc.targets, target.name)
    ]
    rules = [(policy, index, rule) for policy, index, rule in state.rules() if _target_matches(rule.match, target)]
    default = state.default_class()
    return [_classify_one(item, exceptions, rules, default) for item in items]


def _classify_one(
    item: DriftItem,
    exceptions: list[tuple[str, int, PolicyException]],
    rules: list[tuple[str, int, Rule]],
    default: DriftClass,
) -> Classified:
    for policy, index, exc in exceptions:
        if any_match(exc.paths, item.path):
            reason = f"{exc.reason} (owner {exc.owner}, expires {exc.expires.isoformat()})"
            return Classified(item, DriftClass.ACCEPTABLE, reason, f"exception {policy}/{index}")
    for policy, index, rule in rules:
        match = rule.match
        if match.paths and not any_match(match.paths, item.path):
            continue
        if match.ops and item.op not in match.ops:
            continue
        return Classified(item, rule.class_, rule.reason, f"rule {policy}/{index}")
    return Classified(item, default, "no rule matched: policy default", "default")


def _names_match(patterns: list[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _target_matches(match: RuleMatch, target: Target) -> bool:
    """The target-level part of a rule's match (paths and ops are checked per drift item)."""
    meta = target.metadata
    if match.targets and not _names_match(match.targets, target.name):
        return False
    if match.environment and not _names_match(match.environment, meta.environment):
        return False
    if match.app and (meta.app is None or not _names_match(match.app, meta.app)):
        return False
    return all(meta.labels.get(k) == v for k, v in match.labels.items())
