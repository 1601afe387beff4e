"""The daemon's HTTP endpoint: /metrics, /healthz (the process answers), /readyz (store reachable,
desired state loaded) and the JSON API under /api/v1/ (runtime/api.py)."""

from __future__ import annotations

import json
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.observe import logging as logs
from reconciler.runtime.api import Api

log = logs.get_logger("reconciler.http")

Check = Callable[[], dict[str, Any]]  # {"ready": bool, ...details}
Render = Callable[[], tuple[bytes, str]]
MAX_BODY = 64 * 1024


BACKLOG = 256  # connections the kernel queues before accept: a burst of scrapes is answered, not refused
REQUEST_TIMEOUT_S = 10.0  # a connection that sends nothing for this long is closed (slow partial requests)


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr; one line of log says as much without a flood to provoke
        error = sys.exc_info()[1]
        log.warning("http request failed", error=type(error).__name__, client=str(client_address[0]))


class HttpServer:
    """Serves the three endpoints on a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        render_metrics: Render,
        readiness: Check,
        api: Api | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        handler = _handler(render_metrics, readiness, api, request_timeout_s)
        self._server = _Server((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Base(BaseHTTPRequestHandler):
    """What every response shares: a Server header without the Python version, replies, logs at debug."""

    server_version = "reconciler"

    def version_string(self) -> str:
        return self.server_version  # not the Python version, which the default adds

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data, indent=2).encode() + b"\n", "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", request=format % args)


def _handler(render_metrics: Render, readiness: Check, api: Api | None, timeout_s: float) -> type[_Base]:
    class Handler(_Base):
        timeout = timeout_s  # per socket operation: a request trickled in slower than this is dropped

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = render_metrics()
                self._send(200, body, content_type)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                detail = readiness()
                status = 200 if detail.get("ready") else 503
                self._send(status, json.dumps(detail).encode() + b"\n", "application/json")
            elif path.startswith("/api/") and api is not None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                self._json(*api.get(path, query))
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if api is None or not path.startswith("/api/"):
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._json(400, {"error": f"a JSON body of at most {MAX_BODY} bytes is required"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._json(400, {"error": "the body must be a JSON object"})
                return
            self._json(*api.post(path, body, self.headers.get("Authorization")))

    return Handler
