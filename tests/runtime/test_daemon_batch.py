"""The daemon's workers take the passes that fell due together as one batch, read in bulk."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import registry
from reconciler.adapters.file import FileAdapter
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.runtime.compose import build
from reconciler.runtime.daemon import Daemon
from reconciler.settings import Settings
from reconciler.store import engine as engines
from reconciler.store import migrate


class Counting(FileAdapter):
    """The file adapter, counting its reads: every instance shares the log."""

    discovered: list[str] = []
    bulk: list[int] = []

    def discover(self, target: Target) -> Observed:
        Counting.discovered.append(target.name)
        return super().discover(target)

    def fingerprints(self, targets: Any) -> dict[str, str]:
        Counting.bulk.append(len(targets))
        return super().fingerprints(targets)


def batch(daemon: Daemon, names: list[str]) -> None:
    """Queue `names` at once, then let one worker take them as one batch and finish it."""
    for name in names:
        daemon.queue.add(name)
    worker = threading.Thread(target=daemon._work)
    worker.start()
    deadline = time.monotonic() + 20
    while (len(daemon.queue) or daemon.queue.working) and time.monotonic() < deadline:
        time.sleep(0.01)  # done when every pass has ended (the scheduler knows no interval: none is queued again)
    daemon.queue.close()
    worker.join(10)
    assert not worker.is_alive()


def test_a_batch_reads_in_full_only_the_targets_that_changed(
    settings: Settings, sqlite_url: str, example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = registry.adapter_class
    monkeypatch.setattr(registry, "adapter_class", lambda name: Counting if name == "file" else real(name))
    monkeypatch.setattr(Counting, "discovered", [])
    monkeypatch.setattr(Counting, "bulk", [])
    engine = engines.create_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})})
    components = build(settings)  # one engine, and so one memo, for every daemon below
    names = sorted(components.desired.current().targets)
    assert len(names) == 3

    batch(Daemon(components), names)  # the first passes read everything
    assert sorted(Counting.discovered) == names and Counting.bulk == [3]

    Counting.discovered.clear()
    batch(Daemon(components), names)
    assert Counting.discovered == [] and Counting.bulk == [3, 3]  # one bulk read, no read of its own

    live = example / "live" / "payments-api" / "prod" / "config.yaml"
    live.write_text(live.read_text().replace("log_level: DEBUG", "log_level: WARN"))
    batch(Daemon(components), names)
    assert Counting.discovered == ["payments-api-prod"]
    runs = components.store.runs()
    assert len(runs) == 4  # three first passes with drift, one for the change; none for unchanged passes
    components.store.engine.dispose()
