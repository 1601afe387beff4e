"""The safety gate in running daemons: the rolling blast-radius window and the rollout of a desired version in
waves hold across passes and, on PostgreSQL, across replicas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port, reconciler, wait_for, write_fleet

pytestmark = pytest.mark.e2e
INTERVAL_S = 1


@pytest.fixture
def spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[subprocess.Popen[bytes]]]]:
    """Start `replicas` daemons in apply mode on a fleet folder with `extra` settings."""
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str, desired: Path, live: Path, extra: dict[str, str], replicas: int = 1) -> list[Any]:
        env = {
            **os.environ,
            "RECONCILER_DESIRED_DIR": str(desired),
            "RECONCILER_DATABASE_URL": url,
            "RECONCILER_FILE__ROOTS": json.dumps([str(live)]),
            "RECONCILER_MODE": "apply",
            "RECONCILER_SCHEDULER__LEASE_TTL_S": "2",
            "RECONCILER_SCHEDULER__JITTER_S": "0.2",
            **extra,
        }
        monkeypatch.setenv("RECONCILER_DATABASE_URL", url)
        monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(desired))
        assert reconciler("db", "upgrade").returncode == 0
        for i in range(replicas):
            log = (tmp_path / f"daemon-{i}.log").open("w")
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "reconciler", "run"],
                    env={**env, "RECONCILER_HTTP__PORT": str(free_port())},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        return started

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def fixed(live: Path) -> set[str]:
    return {p.stem for p in live.glob("*.yaml") if p.read_text() == "log_level: INFO\n"}


def logged(tmp_path: Path, text: str) -> bool:
    return any(text in p.read_text() for p in tmp_path.glob("daemon-*.log"))


def test_the_window_holds_the_daemon_to_its_blast_radius(spawn: Any, tmp_path: Path) -> None:
    """With at most 2 targets written per window, a daemon whose passes each run alone writes 2 of 5 drifted
    targets and holds the rest in dry-run, saying why."""
    live, desired = write_fleet(tmp_path, ["dev"] * 5, INTERVAL_S)
    spawn(f"sqlite:///{tmp_path / 'history.db'}", desired, live, {"RECONCILER_SAFETY__MAX_TARGETS_PER_RUN": "2"})
    wait_for(lambda: len(fixed(live)) == 2, timeout_s=30, what="two targets written")
    wait_for(lambda: logged(tmp_path, "blast radius: 2 targets written in the last 600s"), what="the refusal")
    time.sleep(4 * INTERVAL_S)  # several more intervals: still no more than the window allows
    assert len(fixed(live)) == 2


def test_a_new_version_waits_for_the_earlier_wave_and_its_bake_time(spawn: Any, tmp_path: Path) -> None:
    """Dev is written first; prod waits out the bake time, and `reconciler rollout status` says why."""
    live, desired = write_fleet(tmp_path, ["dev", "dev", "prod"], INTERVAL_S)
    spawn(f"sqlite:///{tmp_path / 'history.db'}", desired, live, {"RECONCILER_ROLLOUT__BAKE_S": "3600"})
    wait_for(lambda: fixed(live) == {"t00", "t01"}, timeout_s=30, what="the dev wave written")
    time.sleep(3 * INTERVAL_S)
    assert fixed(live) == {"t00", "t01"}  # prod is held
    status = reconciler("rollout", "status")
    assert status.returncode == 2 and "wave 4 bakes until" in status.stdout, status.stdout + status.stderr


def test_window_and_waves_hold_across_replicas(spawn: Any, tmp_path: Path, postgres_url: str) -> None:
    """Three replicas on PostgreSQL share one window and one rollout: of six drifted dev targets only three are
    written, and the prod target waits for its wave whichever replica holds it."""
    live, desired = write_fleet(tmp_path, ["dev"] * 6 + ["prod"], INTERVAL_S)
    extra = {
        "RECONCILER_SAFETY__MAX_TARGETS_PER_RUN": "3",
        "RECONCILER_ROLLOUT__BAKE_S": "0",
        "RECONCILER_SCHEDULER__WORKERS": "2",
    }
    processes = spawn(postgres_url, desired, live, extra, replicas=3)
    wait_for(lambda: len(fixed(live)) == 3, timeout_s=40, what="three targets written")
    time.sleep(5 * INTERVAL_S)
    written = fixed(live)
    assert len(written) == 3 and "t06" not in written, written  # the window, and prod waiting for the dev wave
    assert all(p.poll() is None for p in processes)
    assert logged(tmp_path, "blast radius: 3 targets written in the last 600s")
