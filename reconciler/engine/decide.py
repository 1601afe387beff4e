"""Decide, before planning, what must not be fixed automatically after all: drift another writer keeps
changing back (flapping), drift of a read-only source, and paths the source cannot change live. Each becomes
an escalation that says why, so the plan is made once from final classes and never edited afterwards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NamedTuple

from reconciler.domain.drift import Classified
from reconciler.domain.manifest import DriftClass, Target
from reconciler.observe import logging as logs
from reconciler.ports import HistoryStore
from reconciler.remediate import safety

log = logs.get_logger("reconciler.decide")
READ_ONLY = "the source is read-only: nothing can be fixed here"


class Decided(NamedTuple):
    classified: tuple[Classified, ...]
    flapped: tuple[str, ...]  # pointers escalated for flapping
    unfixable: frozenset[str]  # pointers no approval can make fixable (read-only source, unwritable path)


def decide(
    target: Target,
    classified: Sequence[Classified],
    *,
    writable: bool,
    unwritable: Mapping[str, str],
    store: HistoryStore | None,
    limits: safety.Limits,
    now: datetime,
) -> Decided:
    """The final classes of a target's drift, before planning. Without a store (it is unreachable and the pass
    writes nothing) flapping is not looked for."""
    result, flapped = _flapping(target, classified, store, limits, now)
    unfixable: set[str] = set()
    if not writable or unwritable:
        changed = []
        for c in result:
            why = READ_ONLY if not writable else unwritable.get(c.item.pointer) or unwritable.get("")
            if why is None or c.class_ is DriftClass.ACCEPTABLE:
                changed.append(c)
                continue
            unfixable.add(c.item.pointer)
            if not writable:
                changed.append(replace(c, class_=DriftClass.ESCALATE) if c.class_ is DriftClass.REVERSIBLE else c)
            else:  # "": the whole document
                changed.append(replace(c, class_=DriftClass.ESCALATE, reason=f"cannot be fixed live: {why}"))
        result = changed
    return Decided(tuple(result), tuple(flapped), frozenset(unfixable))


def _flapping(
    target: Target, classified: Sequence[Classified], store: HistoryStore | None, limits: safety.Limits, now: datetime
) -> tuple[list[Classified], list[str]]:
    """Reversible drift that reconciler wrote too often lately is escalated instead of written once more."""
    reversible = [c.item.pointer for c in classified if c.class_ is DriftClass.REVERSIBLE]
    if not reversible or store is None:
        return list(classified), []
    writes = store.recent_writes(target.name, reversible, now - timedelta(seconds=limits.flap_window_s))
    if not writes:
        return list(classified), []
    result, flapped = safety.flapping(classified, writes, limits)
    for pointer in flapped:
        log.warning("flapping: stopped writing and escalated", path=pointer, writes=len(writes[pointer]))
    return result, flapped
