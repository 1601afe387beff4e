from __future__ import annotations

import socket
import subprocess
import sys

from reconciler.engine import process


def test_identity_and_liveness() -> None:
    """This process is alive; a finished one is not, even if its pid is reused; other hosts are unknown."""
    me = process.identity()
    assert me.startswith(socket.gethostname() + ":") and process.alive(me) is True
    child = subprocess.run(
        [sys.executable, "-c", "from reconciler.engine import process; print(process.identity())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert process.alive(child.stdout.strip()) is False
    host, pid, _ = me.rsplit(":", 2)
    assert process.alive(f"{host}:{pid}:999999999") is False  # same pid, other start time: a reused pid
    assert process.alive("another-host:1:1") is None
    assert process.alive(None) is False and process.alive("garbage") is False
