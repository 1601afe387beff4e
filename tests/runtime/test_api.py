from __future__ import annotations

from typing import Any

from reconciler.domain.run import Mode
from reconciler.engine.guard import Guard
from reconciler.runtime.api import Api


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
    served.record({**base, "target": "a", "status": "clean", "drift": []})
    served.record({**base, "target": "b", "status": "drift", "drift": [{"path": "/x"}]})
    code, status = served.get("/api/v1/status", {})
    assert code == 200 and status["targets_by_status"] == {"clean": 1, "drift": 1}
    assert status["watches"] == {"etcd": 2} and status["desired_version"] == {"digest": "d"}
    assert [t["target"] for t in served.get("/api/v1/drift", {})[1]["targets"]] == ["b"]
    served.forget({"b"})
    assert served.get("/api/v1/drift", {})[1]["targets"] == []
