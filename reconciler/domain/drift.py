"""Drift: where live differs from desired, and what the policy says about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from reconciler.domain.manifest import DriftClass, DriftOp
from reconciler.domain.paths import KeyPath, to_pointer


class DriftItem(NamedTuple):
    """One difference at one path. Secret values arrive here already redacted.

    A NamedTuple rather than a frozen dataclass: as immutable, and built several times faster, which
    counts when a large document has thousands of differences.
    """

    path: KeyPath
    op: DriftOp
    desired: Any  # MISSING for op add
    observed: Any  # MISSING for op remove
    secret: bool = False

    @property
    def pointer(self) -> str:
        return to_pointer(self.path)


@dataclass(frozen=True, slots=True)
class Classified:
    """A drift item with its class and what decided it."""

    item: DriftItem
    class_: DriftClass
    reason: str
    decided_by: str  # "exception policy/0", "rule policy/2" or "default"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of comparing one target: its drift and the leaf counts behind the drift percentage."""

    items: tuple[DriftItem, ...]
    leaves: int  # union of leaf paths after ignores
    differing: int  # leaf paths that differ

    @property
    def drift_percent(self) -> float:
        return 0.0 if self.leaves == 0 else self.differing * 100.0 / self.leaves
