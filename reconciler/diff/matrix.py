"""The baseline matrix: with `compare --baseline`, one row per key that differs anywhere, holding the
baseline's value and each environment that differs from it, the way a person draws it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.diff.parity import PairResult
from reconciler.domain.paths import KeyPath, to_pointer


@dataclass(frozen=True, slots=True)
class Cell:
    """One environment's value at a key where it differs from the baseline."""

    environment: str
    target: str
    value: Any  # MISSING when the key is absent there
    kind: str  # "differs", "type differs", "only in <env>"
    expected: bool
    note: str
    leaves: int
    entry: str | None  # the allowlist entry that covers it (active or expired)


@dataclass(frozen=True, slots=True)
class Row:
    """One key of one app: the baseline's value and every environment that differs from it."""

    app: str
    path: KeyPath
    baseline_environment: str
    baseline_target: str
    baseline: Any  # MISSING when the baseline lacks the key
    cells: tuple[Cell, ...]  # in the order of the pairs: environment rank

    @property
    def pointer(self) -> str:
        return to_pointer(self.path)

    @property
    def unexpected(self) -> bool:
        return any(not c.expected for c in self.cells)


def rows(results: Sequence[PairResult]) -> list[Row]:
    """The rows of baseline pairs (`a` is the baseline in each): per app, keys in the order they were first
    found, environments in rank order."""
    found: dict[tuple[str, KeyPath], tuple[PairResult, Any, list[Cell]]] = {}
    for result in results:
        for item in result.items:
            key = (result.app, item.path)
            if key not in found:
                found[key] = (result, item.a, [])
            cell = Cell(
                result.b.environment,
                result.b.name,
                item.b,
                item.kind,
                item.expected,
                item.note,
                item.leaves,
                item.entry,
            )
            found[key][2].append(cell)
    return [
        Row(app, path, first.a.environment, first.a.name, baseline, tuple(cells))
        for (app, path), (first, baseline, cells) in found.items()
    ]
