"""The C allocator's arenas and trim (runtime/malloc.py), in processes of their own: an arena limit holds for
the arenas made after it, so each case starts before any thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from reconciler.runtime import malloc

pytestmark = pytest.mark.skipif(malloc._glibc() is None, reason="not glibc: the module does nothing here")

# Threads that each allocate blocks past Python's own allocator (over 512 bytes), then glibc's count of arenas.
CHILD = textwrap.dedent(
    """
    import ctypes, sys, threading
    from reconciler.runtime import malloc

    limited = malloc.limit_arenas(2) if sys.argv[1] == "limit" else None
    kept, started = [], threading.Barrier(6)

    def allocate():
        started.wait()  # all at once: each thread that finds every arena busy makes one of its own
        kept.append([bytes(2000) for _ in range(2000)])

    threads = [threading.Thread(target=allocate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.stderr.flush()
    ctypes.CDLL(None).malloc_stats()  # to stderr: one "Arena N:" block per arena
    print(limited, malloc.trim())
    """
)


def run(how: str, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    done = subprocess.run(
        [sys.executable, "-c", CHILD, how], capture_output=True, text=True, env=environment, check=True
    )
    arenas = sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))
    return done.stdout.strip(), arenas


def test_limit_arenas_holds_the_threads_to_two_arenas() -> None:
    said, arenas = run("limit")
    assert said.split()[0] == "True" and said.split()[1] in ("True", "False")
    assert 1 <= arenas <= 2


def test_without_the_limit_threads_make_arenas_of_their_own() -> None:
    """What the limit is for: glibc gives threads that allocate at once arenas of their own."""
    _, arenas = run("none")
    assert arenas > 2


def test_an_operators_malloc_arena_max_stands() -> None:
    said, arenas = run("limit", MALLOC_ARENA_MAX="4")
    assert said.split()[0] == "False"  # glibc applied the operator's own limit
    assert arenas <= 4
