"""Health gates: after a target's change is committed and verified, the target must stay healthy."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from reconciler.domain.manifest import HealthSpec

Gate = Callable[[], str | None]  # None when healthy, else why not


def gate_for(health: HealthSpec | None, *, sleep: Callable[[float], None] = time.sleep) -> Gate | None:
    """The check a target's health spec asks for, or None when it declares none."""
    if health is None:
        return None
    probe = health.http

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
