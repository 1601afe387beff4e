from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from reconciler.domain.drift import Comparison
from reconciler.domain.manifest import Target
from reconciler.domain.run import Mode, RunStatus
from reconciler.engine.gate import Hold, dry_run
from reconciler.engine.guard import Guard
from reconciler.engine.outcome import PassOutcome
from reconciler.runtime.api import Api

DRY_RUN = dry_run(Hold.CONFIGURED)


def api(token: str | None) -> Api:
    return Api(
        version=lambda: {"digest": "d"},
        guard=Guard(Mode.APPLY, ["*"]),
        approvals=None,  # type: ignore[arg-type]  # not reached by these requests
        approval_ttl_s=60,
        readiness=lambda: {"ready": True, "remediation": "on"},
        watches=lambda: {"etcd": 2},
        token=token,
    )


def test_the_state_changing_api_is_off_without_a_token() -> None:
    code, body = api(None).post("/api/v1/mode", {"mode": "dry-run"}, "Bearer anything")
    assert code == 403 and "RECONCILER_HTTP__API_TOKEN" in body["error"]


def test_mode_holds_dry_run_and_never_goes_beyond_the_configured_mode() -> None:
    served = api("t")
    assert served.post("/api/v1/mode", {"mode": "dry-run"}, "Bearer t") == (200, {"mode": "dry-run"})
    assert served.guard.mode() is Mode.DRY_RUN
    assert served.post("/api/v1/mode", {"mode": "apply"}, "Bearer t") == (200, {"mode": "apply"})
    assert served.post("/api/v1/mode", {"mode": "apply"}, "Basic dA==")[0] == 401
    assert served.post("/api/v1/nope", {}, "Bearer t")[0] == 404


def test_status_counts_the_last_pass_of_each_target() -> None:
    served = api(None)
    base: dict[str, Any] = {"environment": "prod", "mode": "dry-run", "drift_percent": 0.0, "error": None}
    served.record("a", {**base, "target": "a", "status": "clean", "drift": []})
    served.record("b", {**base, "target": "b", "status": "drift", "drift": [{"path": "/x"}]})
    code, status = served.get("/api/v1/status", {})
    assert code == 200 and status["targets_by_status"] == {"clean": 1, "drift": 1}
    assert status["watches"] == {"etcd": 2} and status["desired_version"] == {"digest": "d"}
    assert [t["target"] for t in served.get("/api/v1/drift", {})[1]["targets"]] == ["b"]
    served.forget({"b"})
    assert served.get("/api/v1/drift", {})[1]["targets"] == []


def test_a_pass_is_rendered_when_asked_for_and_an_unchanged_repeat_keeps_its_rendering() -> None:
    """/drift and the UI render a target's last pass when asked, not per pass; an unchanged pass that shows what
    the kept unchanged pass showed keeps that rendering (only `at` moves), anything else is rendered again. A
    rendering that shows no drift and no action is not kept."""
    rendered: list[str] = []

    def render(outcome: Any) -> dict[str, Any]:
        rendered.append(outcome.status.value)
        drift = [{"path": "/x"}] if outcome.status is RunStatus.DRIFT else []
        return {"target": outcome.target.name, "status": outcome.status.value, "drift": drift}

    served = api(None)
    served.render = render
    target = Target.model_validate(
        {
            "kind": "Target",
            "metadata": {"name": "a", "environment": "prod"},
            "spec": {"source": {"adapter": "file"}, "desired": {}},
        }
    )
    comparison = Comparison(items=(), leaves=3, differing=1)
    first = PassOutcome(target, DRY_RUN, RunStatus.DRIFT, comparison, unchanged=True, fingerprint="f")
    served.record("a", first)
    assert rendered == []  # nothing rendered until asked
    at = served.latest()["a"]["at"]
    assert rendered == ["drift"]
    time.sleep(0.01)
    following = replace(first)  # the next unchanged pass: same memo, same status
    references = sys.getrefcount(following)
    served.record("a", following)
    again = served.latest()["a"]
    assert rendered == ["drift"] and again["at"] > at
    # The pass kept is the first one: the new one is not kept, which would leave an object (and its decision) a
    # target and interval for the steady state's full collections to walk.
    assert sys.getrefcount(following) == references
    served.record("a", replace(first, status=RunStatus.CLEAN, comparison=Comparison(items=(), leaves=3, differing=1)))
    assert served.latest()["a"]["status"] == "clean" and rendered == ["drift", "clean"]
    assert served.latest()["a"]["status"] == "clean" and rendered == ["drift", "clean", "clean"]  # not kept


def test_status_and_drift_render_no_pass_that_shows_no_drift() -> None:
    """/status summarizes each pass without rendering it, and /drift renders only the passes that drifted: a
    status of 100,000 targets renders nothing, and keeps nothing rendered afterwards."""
    rendered: list[str] = []
    served = api(None)

    def render(outcome: Any) -> dict[str, Any]:
        rendered.append(outcome.target.name)
        return {"target": outcome.target.name, "environment": "prod", "status": outcome.status.value, "drift": []}

    served.render = render
    served.summarize = lambda o: {"target": o.target.name, "status": o.status.value, "drift": len(o.classified)}
    clean = PassOutcome(_target("a"), DRY_RUN, RunStatus.CLEAN, Comparison(items=(), leaves=3, differing=0))
    served.record("a", clean)
    served.record("b", PassOutcome(_target("b"), DRY_RUN, RunStatus.FAILED, None, error="unreadable"))
    code, status = served.get("/api/v1/status", {})
    assert code == 200 and rendered == []
    assert status["targets_by_status"] == {"clean": 1, "failed": 1}
    assert [(t["target"], t["status"], t["drift"]) for t in status["targets"]] == [
        ("a", "clean", 0),
        ("b", "failed", 0),
    ]
    assert all(t["at"] for t in status["targets"])
    assert served.get("/api/v1/drift", {}) == (200, {"targets": []}) and rendered == []
    assert served.get("/api/v1/drift", {"target": "a"})[0] == 200 and rendered == ["a"]  # asked by name


def _target(name: str) -> Target:
    return Target.model_validate(
        {
            "kind": "Target",
            "metadata": {"name": name, "environment": "prod"},
            "spec": {"source": {"adapter": "file"}, "desired": {}},
        }
    )
