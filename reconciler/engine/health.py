"""Health gates: after a target's change is committed and verified, the target must stay healthy.

Two kinds, both optional and both checked when declared: an HTTP probe that must answer the expected status
within a window, and a Prometheus query that must hold at every evaluation for a window.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from reconciler.domain.manifest import HealthSpec, HttpProbe, PrometheusQuery

Gate = Callable[[], str | None]  # None when healthy, else why not
Sleep = Callable[[float], None]


def gate_for(health: HealthSpec | None, *, sleep: Sleep = time.sleep) -> Gate | None:
    """The check a target's health spec asks for, or None when it declares none."""
    if health is None:
        return None
    checks: list[Gate] = []
    if health.http is not None:
        checks.append(_http(health.http, sleep))
    if health.prometheus is not None:
        checks.append(_prometheus(health.prometheus, sleep))

    def check() -> str | None:
        for one in checks:
            if (why := one()) is not None:
                return why
        return None

    return check


def _http(probe: HttpProbe, sleep: Sleep) -> Gate:
    def check() -> str | None:
        deadline = time.monotonic() + probe.within
        last = "no answer"
        while True:
            try:
                with urllib.request.urlopen(probe.url, timeout=probe.timeout) as response:  # noqa: S310 - http(s) only, by the manifest's schema
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                status, last = None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if status == probe.status:
                return None
            if status is not None:
                last = f"status {status}"
            if time.monotonic() + probe.interval > deadline:
                return f"{probe.url} did not answer {probe.status} within {probe.within:g}s (last: {last})"
            sleep(probe.interval)

    return check


def _prometheus(gate: PrometheusQuery, sleep: Sleep) -> Gate:
    endpoint = gate.url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": gate.query})

    def evaluate() -> str | None:
        try:
            with urllib.request.urlopen(endpoint, timeout=gate.timeout) as response:  # noqa: S310 - http(s) only
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return f"Prometheus answered {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"Prometheus could not be asked: {type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if body.get("status") != "success":
            return f"Prometheus: {body.get('error', 'query failed')}"
        data = body.get("data", {})
        result = data.get("result", [])
        if data.get("resultType") == "scalar":
            values = [result[1]] if result else []
        else:
            values = [sample.get("value", [0, "0"])[1] for sample in result]
        if not values:
            return "the query returned nothing"
        if any(float(v) == 0 for v in values):
            return "the query returned 0"
        return None

    def check() -> str | None:
        deadline = time.monotonic() + gate.for_
        while True:
            if (why := evaluate()) is not None:
                return f"{gate.query!r} did not hold: {why}"
            if time.monotonic() + gate.interval > deadline:
                return None
            sleep(gate.interval)

    return check
