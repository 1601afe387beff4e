"""A new desired version in the daemon: what is made again depends on what the edit changed."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.runtime.compose import build
from reconciler.runtime.daemon import Daemon
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate


def daemon_over(settings: Settings, sqlite_url: str, daemon: bool = False) -> Daemon:
    """The daemon over `settings`, built as `reconciler run` builds it when `daemon` (parity kept, say)."""
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    update = {"http": settings.http.model_copy(update={"port": 0})}
    return Daemon(build(settings.model_copy(update=update), daemon=daemon))


def apps(daemon: Daemon) -> set[str]:
    text = daemon.c.metrics.render()[0].decode()
    return set(re.findall(r'^reconciler_targets_drifting\{app="([^"]*)"', text, flags=re.M))


def test_an_edit_of_values_keeps_the_series_and_one_that_moves_a_target_makes_them_again(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The series grouped by environment and app are made again when a target moves to another app, not when
    an edit changes only what targets want (at 100,000 targets that was 0.5 s of every reload)."""
    daemon = daemon_over(settings, sqlite_url)
    made: list[Any] = []
    real = daemon.c.metrics.init_targets
    monkeypatch.setattr(daemon.c.metrics, "init_targets", lambda *a: (made.append(a), real(*a)))
    daemon._refresh_desired()
    assert len(made) == 1 and apps(daemon) == {"checkout", "payments-api"}

    manifest = settings.desired_dir / "checkout.yaml"
    manifest.write_text(manifest.read_text().replace("LOG_LEVEL: INFO", "LOG_LEVEL: WARNING"))
    daemon._refresh_desired()
    assert "checkout-staging" in daemon.queue  # the edited target is passed again at once
    assert len(made) == 1

    manifest.write_text(manifest.read_text().replace("app: checkout", "app: basket"))
    daemon._refresh_desired()
    assert len(made) == 2 and apps(daemon) == {"basket", "payments-api"}
    daemon.c.store.engine.dispose()


def test_a_reload_waits_while_a_probe_is_answered(settings: Settings, sqlite_url: str) -> None:
    """A new desired version is taken in on the housekeeping thread, which shares the interpreter with the HTTP
    answers; while one is in progress the reload's loops wait for it (domain/pacing.py, runtime/probes.py)."""
    daemon = daemon_over(settings, sqlite_url)
    daemon._refresh_desired()
    manifest = settings.desired_dir / "checkout.yaml"
    manifest.write_text(manifest.read_text().replace("LOG_LEVEL: INFO", "LOG_LEVEL: WARNING"))
    waits: list[float] = []
    wait_turn = daemon.probes.wait_turn
    daemon.probes.wait_turn = lambda *a: waits.append(wait_turn(*a)) or waits[-1]  # type: ignore[method-assign]
    done: list[float] = []
    with daemon.probes.answering():
        reload = threading.Thread(target=lambda: (daemon._refresh_desired(), done.append(time.monotonic())))
        reload.start()
        time.sleep(0.1)
        answered = time.monotonic()
    reload.join(10)
    assert done and done[0] >= answered  # it ended after the answer, not meanwhile
    assert max(waits) >= 0.05
    assert "checkout-staging" in daemon.queue  # and took the edit in
    daemon.c.store.engine.dispose()


def test_a_new_version_is_taken_into_parity_by_the_reload_not_by_a_pass(settings: Settings, sqlite_url: str) -> None:
    """Environment parity takes a new version in on the reload's thread, which waits for answers, before any
    pass: a worker that did it held the interpreter for 0.3 s at 100,000 targets, while a scrape waited."""
    daemon = daemon_over(settings, sqlite_url, daemon=True)
    assert daemon.c.parity is not None
    daemon._refresh_desired()
    manifest = settings.desired_dir / "checkout.yaml"
    manifest.write_text(manifest.read_text().replace("LOG_LEVEL: INFO", "LOG_LEVEL: WARNING"))
    daemon._refresh_desired()
    assert daemon._state is not None
    assert daemon.c.parity._version == daemon._state.version.digest
    daemon.c.store.engine.dispose()
