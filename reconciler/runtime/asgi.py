"""The daemon's one ASGI application: /metrics, /healthz, /readyz, the JSON API (runtime/api.py) and, when given,
the web UI (runtime/ui.py). Every response says `Server: reconciler` and carries the browser security headers; an
error in a handler is one line of log and a 500, never a traceback to the client or a flood in the log."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.observe import logging as logs
from reconciler.runtime.api import STATUS, Api
from reconciler.runtime.probes import PATHS, Probes

log = logs.get_logger("reconciler.http")

Check = Callable[[], dict[str, Any]]  # {"ready": bool, ...details}, at once from memory: run on the event loop
Render = Callable[[], tuple[bytes, str]]
MAX_BODY = 64 * 1024
PIECE = 1000  # items of a streamed JSON array encoded at a time

# The UI loads nothing from elsewhere and runs no inline script or style: a strict policy costs it nothing.
SECURITY_HEADERS = [
    (b"server", b"reconciler"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class Mountable(Protocol):
    """Something that adds its own routes to the application (the web UI)."""

    def routes(self) -> list[BaseRoute]: ...


def _text(status: int, text: str) -> Response:
    return PlainTextResponse(text, status, media_type="text/plain; charset=utf-8")


def html_response(html: str, status: int = 200) -> Response:
    """A page of the web UI: never cached, since it shows live state and the session's CSRF token."""
    return HTMLResponse(html, status, headers={"cache-control": "no-store"})


def json_response(status: int, data: Any, *, indent: int | None = 2) -> Response:
    body = json.dumps(data, indent=indent).encode() + b"\n"
    return Response(body, status, media_type="application/json")


def json_pieces(head: dict[str, Any], key: str, items: Iterable[Any]) -> Iterator[bytes]:
    """The JSON object `head` with `key` holding `items` as an array, one item a line, encoded PIECE items at a
    time: a streamed answer holds one piece at once, and each piece is made in the server's thread pool, so that
    passes go on between pieces."""
    opening = json.dumps({**head, key: []}, indent=None)
    yield opening[: -len("[]}")].encode() + b"["
    rest = iter(items)
    separator = "\n"
    while piece := list(itertools.islice(rest, PIECE)):
        yield (separator + ",\n".join(json.dumps(item) for item in piece)).encode()
        separator = ",\n"
    yield b"\n]}\n"


async def read_json_body(request: Request, timeout_s: float) -> dict[str, Any] | Response:
    """A JSON object of at most MAX_BODY bytes, or the 400 (or 408) that says what is wrong with it."""
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY:
        return json_response(400, {"error": f"a JSON body of at most {MAX_BODY} bytes is required"})
    try:
        raw = await asyncio.wait_for(request.body(), timeout_s)
    except TimeoutError:
        return json_response(408, {"error": "the request body did not arrive in time"})
    try:
        body = json.loads(raw[:length] or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return json_response(400, {"error": "the body must be a JSON object"})
    return body


def _routes(render_metrics: Render, readiness: Check, api: Api | None, body_timeout_s: float) -> list[BaseRoute]:
    def metrics(_: Request) -> Response:
        body, content_type = render_metrics()
        return Response(body, 200, media_type=content_type)

    # The probes are answered on the server's event loop, not in its thread pool as a plain function would be:
    # they read what is kept in memory, and the hop to a pool thread and back costs two more waits for the
    # interpreter while passes hold it (/readyz took 315-412 ms during a desired-state edit at 100,000
    # targets that way, docs/benchmarks.md).
    async def healthz(_: Request) -> Response:
        return _text(200, "ok\n")

    async def readyz(_: Request) -> Response:
        detail = readiness()  # the daemon's decision (runtime/daemon.py); this only serves it
        return json_response(200 if detail.get("ready") else 503, detail, indent=None)

    routes: list[BaseRoute] = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if api is None:
        return routes

    def api_get(request: Request) -> Response:
        if request.url.path == STATUS:  # every target: streamed
            head, rows = api.status()
            return StreamingResponse(json_pieces(head, "targets", rows), media_type="application/json")
        return json_response(*api.get(request.url.path, dict(request.query_params)))

    async def api_post(request: Request) -> Response:
        body = await read_json_body(request, body_timeout_s)
        if isinstance(body, Response):
            return body
        answer = await run_in_threadpool(api.post, request.url.path, body, request.headers.get("authorization"))
        return json_response(*answer)

    routes.append(Route("/api/{rest:path}", api_get, methods=["GET"]))
    routes.append(Route("/api/{rest:path}", api_post, methods=["POST"]))
    return routes


def application(
    render_metrics: Render,
    readiness: Check,
    api: Api | None,
    ui: Mountable | None,
    *,
    body_timeout_s: float,
    probes: Probes | None = None,
) -> ASGIApp:
    routes = _routes(render_metrics, readiness, api, body_timeout_s)
    if ui is not None:
        routes += ui.routes()

    async def not_found(_: Request, __: Exception) -> Response:
        return _text(404, "not found\n")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return Guarded(app, probes)


class Guarded:
    """Adds the shared headers to every response, and turns an exception in a handler into one log line and a
    500 (Starlette's own error middleware re-raises it to the server, which logs a traceback per request). While
    it answers a probe or a scrape, the workers wait between passes (runtime/probes.py)."""

    def __init__(self, app: ASGIApp, probes: Probes | None = None) -> None:
        self.app = app
        self.probes = probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        try:
            if self.probes is not None and scope.get("path") in PATHS:
                with self.probes.answering():
                    await self.app(scope, receive, send_with_headers)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log.warning("http request failed", error=type(exc).__name__, path=str(scope.get("path", ""))[:200])
            if not started:
                await _text(500, "internal error\n")(scope, receive, send_with_headers)
