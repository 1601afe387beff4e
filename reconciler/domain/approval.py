"""Approvals: a person's yes or no to one escalated drift, valid only for that exact drift."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.domain.drift import DriftItem
from reconciler.domain.paths import MISSING
from reconciler.domain.values import canonical_json


class ApprovalState(StrEnum):
    PENDING = "pending"  # waiting for a person
    APPROVED = "approved"  # may be applied by the next apply pass, until it expires
    REJECTED = "rejected"  # stays escalated; not asked again for this exact drift
    EXPIRED = "expired"  # approved but not used in time: must be given again
    SUPERSEDED = "superseded"  # live or desired changed: the drift it was for no longer exists
    USED = "used"  # applied, staged and verified


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    drift_key: str
    target: str
    environment: str
    pointer: str
    op: str
    desired: Any
    observed: Any
    reason: str
    state: ApprovalState
    created_at: datetime
    actor: str | None = None
    comment: str | None = None
    decided_at: datetime | None = None
    expires_at: datetime | None = None
    action_id: str | None = None


def drift_key(target: str, item: DriftItem) -> str:
    """The identity of one drift: target, path, op and both values (secrets by their keyed hash). If live or
    desired changes, the key changes, and an approval given for the old key no longer applies."""

    def part(value: Any) -> str:
        return "~missing" if value is MISSING else canonical_json(value)

    material = "\x1f".join((target, item.pointer, item.op.value, part(item.desired), part(item.observed)))
    return hashlib.sha256(material.encode()).hexdigest()
