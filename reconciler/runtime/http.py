"""The daemon's HTTP endpoint: /metrics, /healthz (the process answers) and /readyz (store reachable,
desired state loaded)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.http")

Check = Callable[[], dict[str, Any]]  # {"ready": bool, ...details}
Render = Callable[[], tuple[bytes, str]]


class HttpServer:
    """Serves the three endpoints on a background thread."""

    def __init__(self, host: str, port: int, *, render_metrics: Render, readiness: Check) -> None:
        handler = _handler(render_metrics, readiness)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
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


def _handler(render_metrics: Render, readiness: Check) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "reconciler"

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
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http request", request=format % args)

    return Handler
