from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from reconciler.domain.run import Mode
from reconciler.engine.guard import Guard
from reconciler.runtime.api import Api
from reconciler.runtime.http import HttpServer


def _api() -> Api:
    return Api(
        version=lambda: {"digest": "d"},
        guard=Guard(Mode.APPLY, ["*"]),
        approvals=None,  # type: ignore[arg-type]  # not reached by these requests
        approval_ttl_s=60,
        readiness=lambda: {"ready": True},
        watches=dict,
        token="s3cret-token",
    )


def _server(request_timeout_s: float = 10.0, api: Api | None = None) -> HttpServer:
    return HttpServer(
        "127.0.0.1",
        0,
        render_metrics=lambda: (b"reconciler_up 1\n", "text/plain"),
        readiness=lambda: {"ready": True},
        api=api or _api(),
        request_timeout_s=request_timeout_s,
    )


@pytest.fixture
def server() -> Iterator[HttpServer]:
    served = _server(request_timeout_s=0.5)
    served.start()
    yield served
    served.stop()


def _exchange(address: tuple[str, int], raw: bytes, timeout_s: float = 5.0) -> bytes:
    with socket.create_connection(address, timeout=timeout_s) as conn:
        conn.sendall(raw)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_non_ascii_bearer_token_is_refused_with_401(server: HttpServer, capfd: pytest.CaptureFixture[str]) -> None:
    """A token with bytes outside ASCII gets 401 like any wrong token: no dropped connection, no traceback."""
    body = json.dumps({"mode": "dry-run"}).encode()
    head = f"POST /api/v1/mode HTTP/1.0\r\nContent-Length: {len(body)}\r\n".encode()
    answer = _exchange(server.address, head + b"Authorization: Bearer s3cr\xc3\xa9t-\xff\r\n\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"Bearer <token>" in answer
    assert "Traceback" not in capfd.readouterr().err
    good = head + b"Authorization: Bearer s3cret-token\r\n\r\n" + body
    assert _exchange(server.address, good).startswith(b"HTTP/1.1 200 ")


def test_the_server_header_names_no_python_version(server: HttpServer) -> None:
    """The Server header says reconciler, not the Python version behind it."""
    answer = _exchange(server.address, b"GET /healthz HTTP/1.0\r\n\r\n")
    headers = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert "\r\nserver: reconciler\r\n" in headers
    assert "python" not in headers


def test_a_slow_partial_request_is_timed_out(server: HttpServer) -> None:
    """A client that sends half a request and waits is disconnected after the request timeout, instead of
    holding a thread for ever."""
    started = time.monotonic()
    with socket.create_connection(server.address, timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert conn.recv(1024) == b""  # closed by the server
    assert time.monotonic() - started < 5


def test_a_burst_of_200_concurrent_scrapes_is_answered() -> None:
    """200 connections that arrive at once (here: before the server accepts any) are all queued by the
    kernel and answered; with the default backlog of 5 most were refused or timed out."""
    served = _server()
    try:
        conns = [socket.create_connection(served.address, timeout=0.5) for _ in range(200)]
        for conn in conns:
            conn.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        served.start()
        answers: list[bytes] = []
        lock = threading.Lock()

        def read(conn: socket.socket) -> None:
            conn.settimeout(10)
            data = b"".join(iter(lambda: conn.recv(65536), b""))
            with lock:
                answers.append(data)

        readers = [threading.Thread(target=read, args=(conn,), daemon=True) for conn in conns]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 15
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        assert len(answers) == 200
        assert all(a.startswith(b"HTTP/1.1 200 ") and a.endswith(b"reconciler_up 1\n") for a in answers)
        for conn in conns:
            conn.close()
    finally:
        served.stop()


def test_the_probes_are_answered_on_the_event_loop_not_in_a_pool_thread() -> None:
    """/readyz and /healthz answer from memory on the server's loop: a hop to a pool thread and back costs two
    more waits for the interpreter while passes hold it (docs/benchmarks.md, "Session 20")."""
    seen: list[str] = []

    def readiness() -> dict[str, object]:
        try:
            asyncio.get_running_loop()
            seen.append("loop")
        except RuntimeError:
            seen.append(threading.current_thread().name)
        return {"ready": len(seen) < 2}

    served = HttpServer("127.0.0.1", 0, render_metrics=lambda: (b"", "text/plain"), readiness=readiness)
    served.start()
    try:
        assert _exchange(served.address, b"GET /readyz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        assert _exchange(served.address, b"GET /readyz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        assert _exchange(served.address, b"GET /healthz HTTP/1.0\r\n\r\n").endswith(b"ok\n")
    finally:
        served.stop()
    assert seen == ["loop", "loop"]


def test_status_of_many_targets_is_streamed_and_says_what_the_api_says() -> None:
    """/api/v1/status is sent in pieces (chunked), each made when the client takes it; the JSON it adds up to is
    what Api.get gives, targets by name."""
    api = _api()
    for i in reversed(range(2500)):  # three pieces
        t = {"target": f"t{i:04}", "environment": "prod", "mode": "dry-run", "status": "clean", "error": None}
        api.record(f"t{i:04}", {**t, "drift_percent": 0.0, "drift": [{"path": "/x"}] if i == 7 else []})
    served = _server(api=api)
    served.start()
    try:
        host, port = served.address
        with urllib.request.urlopen(f"http://{host}:{port}/api/v1/status", timeout=10) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.headers["content-type"].startswith("application/json")
            body = json.load(response)
    finally:
        served.stop()
    assert body == api.get("/api/v1/status", {})[1]
    assert [t["target"] for t in body["targets"]] == [f"t{i:04}" for i in range(2500)]
    assert body["targets"][7]["drift"] == 1 and body["targets_by_status"] == {"clean": 2500}
