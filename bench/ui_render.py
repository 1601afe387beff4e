"""Server-side rendering of the web UI's two biggest pages, against rendering the same data as JSON.

    .venv/bin/python -m bench.ui_render [--targets 10000] [--keys 1000] [--repeat 5]

Fleet: `--targets` targets (apps x 4 environments), each with a last pass as the API keeps it (a third drift),
built into tiles (present/fleet.py) and rendered (fleet.html). Matrix: one app in 4 environments with `--keys`
leaf keys each, a tenth differing, compared pairwise (diff/parity.py), built into cells (present/matrix.py)
and rendered (app.html). The baseline, measured in the same run, is json.dumps of the same input (the last
passes; the four documents), which is what /api/v1/drift costs. Reading live state is not included.
Targets: fleet <= 200 ms at 10,000 targets, matrix <= 300 ms at 1,000 keys x 4; each page <= 200 KB.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.diff import parity
from reconciler.domain.manifest import DesiredVersion, Target
from reconciler.domain.state import DesiredState
from reconciler.present import fleet, matrix, web

ENVIRONMENTS = ("dev", "qa", "staging", "prod")
NOW = datetime(2026, 12, 1, tzinfo=UTC)
CHROME = {"actor": None, "csrf": "", "actions_on": True, "flash": None, "flash_error": False, "here": "/"}


def _target(name: str, app: str, environment: str) -> Target:
    return Target.model_validate(
        {
            "kind": "Target",
            "metadata": {"name": name, "app": app, "environment": environment, "labels": {"team": app[:3]}},
            "spec": {"source": {"adapter": "file", "path": f"/x/{name}"}, "desired": {"a": 1}},
        }
    )


def _state(targets: list[Target]) -> DesiredState:
    return DesiredState(Path("."), DesiredVersion("f" * 64), {t.name: t for t in targets}, ())


def _line(what: str, seconds: float, html: str, baseline: float, text: str) -> None:
    print(
        f"{what}: page {seconds * 1000:7.1f} ms, {len(html.encode()) / 1024:6.0f} KB; "
        f"JSON {baseline * 1000:6.1f} ms, {len(text) / 1024:6.0f} KB; ratio {seconds / baseline:5.1f}x"
    )


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def fleet_page(count: int, repeat: int) -> None:
    targets = [
        _target(f"app{i // 4:05}-{ENVIRONMENTS[i % 4]}", f"app{i // 4:05}", ENVIRONMENTS[i % 4]) for i in range(count)
    ]
    state = _state(targets)
    drift = [{"path": "/a", "class": "reversible", "op": "change"}]
    at = NOW.isoformat()
    latest = {
        t.name: {
            "target": t.name,
            "status": "drift" if i % 3 == 0 else "clean",
            "drift": drift if i % 3 == 0 else [],
            "at": at,
            "error": None,
        }
        for i, t in enumerate(targets)
    }

    def render() -> str:
        view = fleet.build(
            state,
            latest,
            lambda _: fleet.Times(None, NOW.timestamp()),
            default_interval_s=60,
            now=NOW,
            filters=fleet.Filters(),
        )
        return web.page(
            "fleet.html",
            title="Fleet",
            fleet=view,
            filters=fleet.Filters(),
            states=fleet.STATES,
            version={"digest": "f" * 64, "git_commit": None},
            mode="apply",
            remediation="on",
            held=[],
            pages={},
            per_page=fleet.APPS_PER_PAGE,
            chrome=CHROME,
            refresh="/",
        )

    seconds, html = _best(render, repeat)
    baseline, text = _best(lambda: json.dumps(list(latest.values())), repeat)
    _line(f"fleet  {count:>6} targets", seconds, html, baseline, text)


def matrix_page(keys: int, repeat: int) -> None:
    targets = [_target(f"big-{e}", "big", e) for e in ENVIRONMENTS]
    state = _state(targets)
    documents = {
        t.name: {
            f"group{g}": {
                f"key{k}": (k if k % 10 or t.environment == "prod" else -k)
                for k in range(g * 50, min(keys, g * 50 + 50))
            }
            for g in range((keys + 49) // 50)
        }
        for t in targets
    }

    def render() -> str:
        results = parity.compare_environments(state, ENVIRONMENTS, documents=documents, apps=["big"], now=NOW)
        view = matrix.build(
            "big", targets, documents, {}, results, {}, baseline="prod", only_differing=False, hmac_key=b"k"
        )
        return web.page("app.html", title="Parity", matrix=view, only=False, chrome=CHROME, refresh="/apps/big")

    seconds, html = _best(render, repeat)
    baseline, text = _best(lambda: json.dumps(documents), repeat)
    _line(f"matrix {keys:>6} keys x 4", seconds, html, baseline, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    fleet_page(args.targets, args.repeat)
    matrix_page(args.keys, args.repeat)


if __name__ == "__main__":
    main()
