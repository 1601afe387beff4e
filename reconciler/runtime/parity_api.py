"""GET /api/v1/parity[?app=NAME]: the daemon's environment parity, in the JSON of `reconciler compare --baseline
... --format json` (the same report, rendered by the same code), from the documents its passes last read."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from reconciler.diff import parity
from reconciler.engine.parity_watch import ParityWatch
from reconciler.present import parity as parity_views

View = Callable[[str | None], tuple[int, dict[str, Any]]]


def view_of(watch: ParityWatch | None) -> View | None:
    """What the API answers /api/v1/parity with, or None when the daemon keeps no parity."""
    if watch is None:
        return None
    return lambda app: view(watch, app)


def view(watch: ParityWatch, app: str | None) -> tuple[int, dict[str, Any]]:
    if app is not None and app not in watch.apps():
        return 404, {"error": f"no app named {app} in the desired state"}
    snapshot = watch.snapshot(app)
    baselines = sorted({b for b in snapshot.baselines.values() if b is not None})
    # One baseline for every app, as `compare --baseline` has; apps with baselines of their own list them all.
    baseline = ", ".join(baselines) if baselines else None
    environments = [e for e in snapshot.environments if e not in baselines]
    report = parity_views.ParityReport(
        "live state",
        environments,
        snapshot.results,
        parity.findings(snapshot.results, datetime.now(UTC)),
        dict(snapshot.errors),
        baseline,
        "unexpected",
    )
    data: dict[str, Any] = json.loads(parity_views.render_parity(report, "json"))
    return 200, data
