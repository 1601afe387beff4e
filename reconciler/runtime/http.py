"""The daemon's HTTP endpoint: one ASGI application (runtime/asgi.py: /metrics, /healthz, /readyz, the JSON API
under /api/v1/ and the web UI under /) served by uvicorn on a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from reconciler.observe import logging as logs
from reconciler.runtime import asgi
from reconciler.runtime.api import Api
from reconciler.runtime.asgi import Check, Render
from reconciler.runtime.probes import Probes

log = logs.get_logger("reconciler.http")

__all__ = ["BACKLOG", "REQUEST_TIMEOUT_S", "Check", "HttpServer", "Render"]

BACKLOG = 256  # connections the kernel queues before accept: a burst of scrapes is answered, not refused
REQUEST_TIMEOUT_S = 10.0  # a request whose head has not arrived this long after it began is dropped (slow loris)
KEEP_ALIVE_S = 5.0  # an idle kept-alive connection is closed after this long
STOP_TIMEOUT_S = 5.0


def _protocol(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a deadline on reading a request's head: uvicorn times out idle kept-alive
    connections, but a client that trickles a request in (or sends half of one and waits) is held for ever."""

    class DeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first bytes of the next request on a kept-alive connection
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # the head is in: the application has the request

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return DeadlineProtocol


class HttpServer:
    """Serves the application on a background thread. The socket is bound (and listening) when this is built, so
    a port taken fails at once, port 0 has its number, and connections that arrive before start() are queued."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        render_metrics: Render,
        readiness: Check,
        api: Api | None = None,
        ui: asgi.Mountable | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        probes: Probes | None = None,
    ) -> None:
        app = asgi.application(render_metrics, readiness, api, ui, body_timeout_s=request_timeout_s, probes=probes)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(BACKLOG)
        except OSError:
            self._socket.close()
            raise
        config = uvicorn.Config(
            app,
            http=_protocol(request_timeout_s),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,  # the application says `Server: reconciler`, without versions
            backlog=BACKLOG,
            timeout_keep_alive=int(KEEP_ALIVE_S),
            timeout_graceful_shutdown=int(STOP_TIMEOUT_S),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except Exception:
            log.exception("http server stopped")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S + 1)
        self._socket.close()
