"""A new desired version in the daemon: what is made again depends on what the edit changed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.runtime.compose import build
from reconciler.runtime.daemon import Daemon
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate


def daemon_over(settings: Settings, sqlite_url: str) -> Daemon:
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    return Daemon(build(settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})})))


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
