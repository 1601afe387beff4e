"""Probes and scrapes before passes (runtime/probes.py): while /metrics, /healthz or /readyz is answered, a
worker waits between passes, within bounds that a flood of requests cannot pass."""

from __future__ import annotations

import itertools
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest

from reconciler.runtime import probes
from reconciler.runtime.http import HttpServer
from reconciler.runtime.probes import Probes


def test_a_worker_waits_for_an_answer_in_progress_then_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "YIELD_MAX_S", 60.0)  # only the answer's end can end the wait in this test
    answers = Probes()
    assert answers.wait_turn() == 0.0  # nothing answered: no wait
    entered, release = threading.Event(), threading.Event()
    waited: list[float] = []

    def answer() -> None:
        with answers.answering():
            entered.set()
            release.wait(30)

    answering = threading.Thread(target=answer)
    answering.start()
    assert entered.wait(30)
    worker = threading.Thread(target=lambda: waited.append(answers.wait_turn()))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()  # it waits while the answer is in progress
    release.set()
    worker.join(30)
    answering.join(30)
    assert not worker.is_alive() and 0 < waited[0] < 30


def test_a_flood_of_requests_gets_at_most_its_share_of_a_workers_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer that never ends holds a worker YIELD_MAX_S at once; after a wait of w, the worker does not wait
    again for w * (1 - SHARE) / SHARE, so the answers get at most SHARE of its time. The clock moves one second
    at each reading."""
    seconds = itertools.count(100.0)
    monkeypatch.setattr(probes, "time", SimpleNamespace(monotonic=lambda: float(next(seconds))))
    monkeypatch.setattr(probes, "YIELD_MAX_S", 0.01)
    answers = Probes()
    with answers.answering():
        given = [answers.wait_turn() for _ in range(10)]
    # A wait reads the clock when it starts and when it ends (1 s waited); a call that does not wait reads it
    # once. After the wait that ends at 101 s, none until 105 s: one second waited in every five, a fifth.
    assert given == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    # The reload's share is larger: after a wait of 1 s, none for 1 s, which here is the next reading of the
    # clock: it waits at every call, one second waited in every two, a half.
    reload = Probes()
    with reload.answering():
        reloading = [reload.wait_turn(probes.RELOAD_SHARE) for _ in range(6)]
    assert reloading == [1.0] * 6


def test_the_http_server_marks_probes_and_scrapes_as_being_answered() -> None:
    answers = Probes()
    seen: list[int] = []

    def render() -> tuple[bytes, str]:
        seen.append(answers._answering)
        return b"reconciler_up 1\n", "text/plain"

    def ready() -> dict[str, bool]:
        seen.append(answers._answering)
        return {"ready": True}

    server = HttpServer("127.0.0.1", 0, render_metrics=render, readiness=ready, probes=answers)
    server.start()
    try:
        host, port = server.address
        for path in ("/metrics", "/readyz"):
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
                assert response.status == 200
        assert seen == [1, 1]
        deadline = time.monotonic() + 5  # the response is sent a moment before the handler's context ends
        while answers._answering and time.monotonic() < deadline:
            time.sleep(0.01)
        assert answers._answering == 0
    finally:
        server.stop()
