"""Who runs a run: host, pid and process start time, so that a crashed owner can be told from a live one
(a pid alone may have been reused by another process since)."""

from __future__ import annotations

import os
import socket
from functools import cache


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where /proc has none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces; fields after it are space-separated.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


@cache
def identity() -> str:
    """host:pid:start-ticks of this process."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}"


def alive(owner: str | None) -> bool | None:
    """Whether the process named by `owner` still runs: True, False, or None when it is another host's."""
    if not owner:
        return False  # a run from before owners were recorded: nobody holds it
    try:
        host, pid_text, ticks = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    now = _start_ticks(pid)
    if now is not None:
        return now == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return ticks == "-"
