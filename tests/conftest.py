"""Shared fixtures: a private copy of the bundled example, settings pointing at it, a migrated SQLite store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.settings import Settings, load_settings
from reconciler.store import engine as engines
from reconciler.store import migrate
from reconciler.store.history import SqlHistoryStore

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
HMAC_KEY = b"test-hmac-key"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RECONCILER_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of examples/ (desired/ and live/), safe to apply to."""
    target = tmp_path / "example"
    shutil.copytree(EXAMPLES, target)
    return target


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


@pytest.fixture
def settings(example: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the example copy, also exported to the environment for CLI and subprocess tests."""
    monkeypatch.setenv("RECONCILER_DESIRED_DIR", str(example / "desired"))
    monkeypatch.setenv("RECONCILER_FILE__ROOTS", f'["{example / "live"}"]')
    monkeypatch.setenv("RECONCILER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RECONCILER_SECRETS__HMAC_KEY", HMAC_KEY.decode())
    return load_settings()


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlHistoryStore]:
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    yield SqlHistoryStore(engine, HMAC_KEY)
    engine.dispose()
