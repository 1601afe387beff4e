"""The daemon's PostgreSQL goes away behind a proxy (refused, then packets dropped) and comes back.

While it is away: detection and metrics go on (a hand edit is seen and counted), nothing is written, /readyz
answers 503 within a second, every request; after it is back: remediation resumes, and history holds the
passes made during the outage with their times, nothing pending.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.store import tables as t
from tests.e2e.conftest import free_port, get, metric, reconciler, wait_for, write_fleet
from tests.proxy import pausing_proxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    live, desired = write_fleet(tmp_path, ["dev", "dev", "dev"], 1)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", postgres_url)
    assert reconciler("db", "upgrade").returncode == 0
    url = sa.engine.make_url(postgres_url)
    with pausing_proxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        port = free_port()
        env = {
            **os.environ,
            "RECONCILER_DESIRED_DIR": str(desired),
            "RECONCILER_DATABASE_URL": url.set(port=proxy.port).render_as_string(hide_password=False),
            "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
            "RECONCILER_MODE": "apply",
            "RECONCILER_HTTP__PORT": str(port),
            "RECONCILER_SCHEDULER__LEASE_TTL_S": "3",
            "RECONCILER_SCHEDULER__JITTER_S": "0.1",
            "RECONCILER_SAFETY__MAX_FLEET_FRACTION": "1.0",
            "RECONCILER_STORE__CONNECT_TIMEOUT_S": "2",
        }
        log_path = tmp_path / "daemon.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        engine = sa.create_engine(postgres_url)
        try:
            yield {
                "base": f"http://127.0.0.1:{port}",
                "live": live,
                "proxy": proxy,
                "engine": engine,
                "process": process,
                "log": log_path,
            }
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            engine.dispose()


def readyz(base: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    status, body = get(base + "/readyz")
    return status, json.loads(body), time.monotonic() - started


def passes(base: str) -> float:
    text = get(base + "/metrics")[1]
    return sum(metric(text, "reconciler_passes_total", environment="dev", result=r) or 0.0 for r in RESULTS)


RESULTS = ("clean", "drift", "fixed", "failed", "unchanged")


def test_detection_goes_on_while_the_store_is_away_and_history_is_complete_after(daemon: dict[str, Any]) -> None:
    base, live, proxy, engine = daemon["base"], daemon["live"], daemon["proxy"], daemon["engine"]
    t00 = live / "t00.yaml"
    wait_for(lambda: _up(base, daemon["process"]), what="/readyz")
    wait_for(lambda: all("INFO" in p.read_text() for p in live.glob("*.yaml")), what="the fleet fixed")

    proxy.set("refuse")
    cut = time.time()
    wait_for(lambda: readyz(base)[0] == 503, timeout_s=3, what="/readyz 503 once the store refuses")
    t00.write_text("log_level: DEBUG\n")  # a hand edit during the outage
    proxy.set("drop")
    before = passes(base)
    for _ in range(10):  # for 5 s: /readyz answers at once, every time, and says why
        status, body, took = readyz(base)
        assert status == 503 and took < 1.0, (status, took)
        assert body["store"] != "ok" and "paused" in body["remediation"]
        time.sleep(0.5)
    assert passes(base) > before, "passes stopped with the store"
    text = get(base + "/metrics")[1]
    assert metric(text, "reconciler_drift_items", environment="dev", app="", **{"class": "reversible"}) == 1.0
    assert metric(text, "reconciler_history_backlog") >= 1
    assert "DEBUG" in t00.read_text()  # seen, not written: the journal could not be kept

    proxy.set("pass")
    back = time.time()
    wait_for(lambda: readyz(base)[0] == 200, timeout_s=15, what="/readyz 200 once the store is back")
    wait_for(lambda: "INFO" in t00.read_text(), timeout_s=15, what="remediation resumed")
    assert metric(get(base + "/metrics")[1], "reconciler_history_backlog") == 0
    during = (
        sa.select(sa.func.count())
        .select_from(t.passes.join(t.runs, t.passes.c.run_id == t.runs.c.id))
        .where(t.passes.c.target == "t00", t.passes.c.drift_count == 1)
        .where(t.runs.c.started_at > datetime.fromtimestamp(cut, UTC))
        .where(t.runs.c.started_at < datetime.fromtimestamp(back, UTC))
    )
    with engine.connect() as conn:
        kept = conn.execute(during).scalar()
    assert kept >= 1, "the pass that saw the hand edit during the outage is not in history"
    # Nothing of the outage left unsettled. A pass that began just before the store came back may still be in
    # flight when remediation resumes (seen once in CI), so this waits a little; a run left running for good fails.
    until = datetime.fromtimestamp(back, UTC)

    def settled() -> bool:
        with engine.connect() as conn:
            running = conn.execute(
                sa.select(sa.func.count()).where(t.runs.c.status == "running", t.runs.c.started_at < until)
            ).scalar()
            planned = conn.execute(
                sa.select(sa.func.count()).where(
                    t.actions.c.state.in_(["planned", "staged"]), t.actions.c.created_at < until
                )
            ).scalar()
        return running == 0 and planned == 0

    wait_for(settled, timeout_s=10, what="every run and action of the outage settled")
    log = daemon["log"].read_text()
    assert "Traceback" not in log and "history store back: kept passes written" in log
    for line in log.splitlines():  # every line, the libraries' included, is one JSON object
        json.loads(line)


def _up(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the daemon exited"
    try:
        return readyz(base)[0] == 200
    except OSError:
        return False
