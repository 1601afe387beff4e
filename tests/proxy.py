"""A TCP proxy on 127.0.0.1 that can cut a server off the way networks do, for store-outage tests.

Modes: "pass" forwards both ways; "refuse" resets every open connection and every new one at once (a server
that is down); "drop" accepts connections and swallows every byte both ways without an answer (packets lost
in a partition). Switching back to "pass" lets new connections through again; connections cut meanwhile stay
cut, as after a real outage.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PausingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def set(self, mode: str) -> None:
        assert mode in ("pass", "refuse", "drop"), mode
        self.mode = mode
        if mode == "refuse":
            with self._lock:
                cut, self._open = self._open, set()
            for sock in cut:
                _reset(sock)

    def close(self) -> None:
        self._closed = True
        self.set("refuse")
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.mode == "drop":  # accepted, never answered: the client waits on its own timeouts
            self._track(client)
            _swallow(client)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
        except OSError:
            _reset(client)
            return
        self._track(client, server)
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "pass":
                    sink.sendall(data)
                # "drop": the bytes vanish; "refuse": the sockets are reset already
        except OSError:
            pass
        finally:
            _reset(sink)


def _swallow(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (linger 0), as a refused or killed connection looks to the other side."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
    except OSError:
        pass
    sock.close()


@contextmanager
def pausing_proxy(host: str, port: int) -> Iterator[PausingProxy]:
    proxy = PausingProxy((host, port))
    try:
        yield proxy
    finally:
        proxy.close()
