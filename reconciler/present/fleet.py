"""The fleet page's data: one tile per target, laid out apps by environments, coloured by its worst state.

A tile is built from what the daemon already keeps: the target's last pass as the API serves it
(report.target_dict) and, from the metrics, since when it has drifted and when its last good pass was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.domain.manifest import Target, environment_rank
from reconciler.domain.state import DesiredState

# Worst last: a tile takes the worst state that applies. `waiting`: no pass yet since the daemon started.
STATES = ("waiting", "in-sync", "acceptable", "reversible", "escalated", "failing", "stale")
APPS_PER_PAGE = 80  # rows of the fleet page: up to ~320 tiles, under 200 KB
CLASS_STATES = {"acceptable": "acceptable", "reversible": "reversible", "escalate": "escalated"}


@dataclass(frozen=True, slots=True)
class Times:
    """From the metrics: since when the target has had drift that is not acceptable, and its last good pass
    (Unix seconds; None for never)."""

    open_since: float | None
    last_success: float | None


@dataclass(frozen=True, slots=True)
class Tile:
    target: str
    app: str
    environment: str
    state: str
    status: str  # the last pass's status, or "waiting"
    counts: dict[str, int]  # drift items by class
    drift_age_s: float | None  # age of the oldest open drift
    last_pass: str | None  # ISO time of the last pass
    since_pass_s: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Filters:
    environment: str = ""
    app: str = ""
    label: str = ""  # key=value
    state: str = ""

    def keeps(self, target: Target, state: str) -> bool:
        if self.environment and target.environment != self.environment:
            return False
        if self.app and app_of(target) != self.app:
            return False
        if self.state and state != self.state:
            return False
        if self.label:
            key, _, value = self.label.partition("=")
            return target.metadata.labels.get(key.strip()) == value.strip()
        return True


@dataclass
class Fleet:
    apps: list[str]
    environments: list[str]
    grid: dict[tuple[str, str], list[Tile]]
    counts: dict[str, int] = field(default_factory=dict)  # tiles by state, before filtering
    labels: list[str] = field(default_factory=list)  # every key=value, for the filter
    all_apps: list[str] = field(default_factory=list)
    all_environments: list[str] = field(default_factory=list)
    page: int = 1
    pages: int = 1
    matching_apps: int = 0


def app_of(target: Target) -> str:
    """A target's app; one without an app stands alone under its own name."""
    return target.metadata.app or target.name


def tile_state(latest: Mapping[str, Any] | None, times: Times, interval_s: float, now: float) -> str:
    """The worst of: stale (no good pass for twice the interval), failing, escalated, reversible, acceptable."""
    if latest is None:
        return "waiting"
    if times.last_success and now - times.last_success > 2 * interval_s:
        return "stale"
    if latest["status"] == "failed":
        return "failing"
    classes = {CLASS_STATES.get(d["class"], "reversible") for d in latest["drift"]}
    for state in ("escalated", "reversible", "acceptable"):
        if state in classes:
            return state
    return "in-sync"


def build(
    state: DesiredState,
    latest: Mapping[str, Mapping[str, Any]],
    times: Callable[[str], Times],
    *,
    default_interval_s: float,
    now: datetime,
    filters: Filters,
    page: int = 1,
) -> Fleet:
    """The tiles of the apps on `page` (APPS_PER_PAGE apps a page, so a page of a big fleet stays small); the
    counts by state are over the whole fleet."""
    targets = state.ordered_targets()
    counts = dict.fromkeys(STATES, 0)
    kept: list[tuple[Target, str]] = []
    stamp = now.timestamp()
    for target in targets:
        found = latest.get(target.name)
        interval_s = float(target.spec.interval or default_interval_s)
        colour = tile_state(found, times(target.name), interval_s, stamp)
        counts[colour] += 1
        if filters.keeps(target, colour):
            kept.append((target, colour))
    apps = sorted({app_of(t) for t, _ in kept})
    pages = max(1, -(-len(apps) // APPS_PER_PAGE))
    page = min(max(page, 1), pages)
    shown = set(apps[(page - 1) * APPS_PER_PAGE : page * APPS_PER_PAGE])
    grid: dict[tuple[str, str], list[Tile]] = {}
    for target, colour in kept:
        if app_of(target) in shown:
            tile = _tile(target, latest.get(target.name), times(target.name), colour, now)
            grid.setdefault((tile.app, tile.environment), []).append(tile)
    return Fleet(
        apps=sorted(shown),
        environments=sorted({e for _, e in grid}, key=_rank),
        grid=grid,
        counts=counts,
        labels=sorted({f"{k}={v}" for t in targets for k, v in t.metadata.labels.items()}),
        all_apps=sorted({app_of(t) for t in targets}),
        all_environments=sorted({t.environment for t in targets}, key=_rank),
        page=page,
        pages=pages,
        matching_apps=len(apps),
    )


def _rank(environment: str) -> tuple[int, str]:
    return environment_rank(environment), environment


def _tile(target: Target, latest: Mapping[str, Any] | None, times: Times, state: str, now: datetime) -> Tile:
    stamp = now.timestamp()
    counts = {"acceptable": 0, "reversible": 0, "escalate": 0}
    for d in latest["drift"] if latest else ():
        counts[d["class"]] = counts.get(d["class"], 0) + 1
    last_pass = latest.get("at") if latest else None
    since = (now - datetime.fromisoformat(last_pass)).total_seconds() if last_pass else None
    return Tile(
        target=target.name,
        app=app_of(target),
        environment=target.environment,
        state=state,
        status=latest["status"] if latest else "waiting",
        counts=counts,
        drift_age_s=stamp - times.open_since if times.open_since else None,
        last_pass=last_pass,
        since_pass_s=since,
        error=latest.get("error") if latest else None,
    )
