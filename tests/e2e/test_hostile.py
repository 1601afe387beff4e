"""A running daemon next to hostile input: an alias bomb dropped into its desired folder, a live file replaced
by a FIFO. The healthy targets keep their passes on time, nothing dies, and /readyz and the API say what is
wrong."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import get, metric, wait_for

pytestmark = pytest.mark.e2e

BOMB = """kind: Target
metadata: {name: bomb}
spec:
  source: {adapter: file, path: ../live/checkout/staging.env}
  desired:
    a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def passes(base: str, environment: str) -> float:
    text = get(base + "/metrics")[1]
    return sum(metric(text, "reconciler_passes_total", environment=environment, result=r) or 0.0 for r in RESULTS)


RESULTS = ("clean", "drift", "fixed", "failed", "unchanged")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_hostile_edits_next_to_healthy_targets(daemon: dict[str, Any]) -> None:
    base, example, process = daemon["base"], daemon["example"], daemon["process"]
    wait_for(lambda: passes(base, "prod") >= 2, what="prod passing")
    (example / "desired" / "zz-bomb.yaml").write_text(BOMB)
    staging = example / "live" / "checkout" / "staging.env"
    staging.unlink()
    os.mkfifo(staging)

    def refused() -> bool:
        ready = json.loads(get(base + "/readyz")[1])
        return "desired_error" in ready

    wait_for(refused, what="the bomb refused and named in /readyz")
    ready = json.loads(get(base + "/readyz")[1])
    assert "is invalid" in ready["desired_error"] and ready["workers"] == "4/4" and ready["ready"] is True
    assert "zz-bomb.yaml" in daemon["log"].read_text()  # the refusal is logged with the file it names

    def fifo_failed() -> bool:
        status = json.loads(get(base + "/api/v1/status")[1])
        checkout = next((t for t in status["targets"] if t["target"] == "checkout-staging"), None)
        return checkout is not None and "not a regular file" in (checkout.get("error") or "")

    wait_for(fifo_failed, what="the FIFO target failing with a clear error")
    before, started = passes(base, "prod"), time.monotonic()
    time.sleep(4)  # prod's interval is 1 s: its passes go on, on time
    assert passes(base, "prod") - before >= 3, "prod's passes stalled"
    assert time.monotonic() - started < 6
    assert process.poll() is None and rss_mb(process.pid) < 600
    assert "Traceback" not in daemon["log"].read_text()
