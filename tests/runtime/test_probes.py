"""Probes and scrapes before passes (runtime/probes.py): while /metrics, /healthz or /readyz is answered, a
worker waits between passes, within bounds that a flood of requests cannot pass."""

from __future__ import annotations

import threading
import time
import urllib.request

from reconciler.runtime import probes
from reconciler.runtime.http import HttpServer
from reconciler.runtime.probes import Probes


def test_a_worker_waits_for_an_answer_in_progress_then_goes_on() -> None:
    answers = Probes()
    assert answers.wait_turn() == 0.0  # nothing answered: no wait
    entered, release = threading.Event(), threading.Event()

    def answer() -> None:
        with answers.answering():
            entered.set()
            release.wait(5)

    answering = threading.Thread(target=answer)
    answering.start()
    assert entered.wait(5)
    threading.Timer(0.05, release.set).start()
    waited = answers.wait_turn()
    answering.join(5)
    assert 0.03 <= waited < probes.YIELD_MAX_S  # until the answer was sent, not the bound


def test_a_flood_of_requests_gets_at_most_its_share_of_a_workers_time() -> None:
    """An answer that never ends holds a worker YIELD_MAX_S at once; after a wait of w, the worker does not wait
    again for w * (1 - SHARE) / SHARE, so the answers get at most SHARE of its time."""
    answers = Probes()
    with answers.answering():
        waited = answers.wait_turn()
        assert probes.YIELD_MAX_S <= waited < probes.YIELD_MAX_S + 1.0
        started = time.monotonic()
        given = 0.0
        while time.monotonic() - started < 0.8:  # a worker's passes go on
            given += answers.wait_turn()
        assert given == 0.0  # within 4 x 0.25 s of the first wait: no more waits
        time.sleep(waited * (1 - probes.SHARE) / probes.SHARE - (time.monotonic() - started) + 0.05)
        assert answers.wait_turn() >= probes.YIELD_MAX_S  # its share is due again


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
        assert seen == [1, 1] and answers._answering == 0
    finally:
        server.stop()
