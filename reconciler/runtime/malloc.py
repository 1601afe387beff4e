"""The C library's allocator, where the daemon's larger blocks live (glibc's malloc; elsewhere nothing is done).

Python's own allocator serves objects of 512 bytes or less from arenas of its own. Larger blocks (a dict's
table past a few entries, a packed document, a file's bytes, a batch's lists) come from the C library's
malloc. glibc gives each thread that allocates an arena of its own, up to eight per core, and a block freed in
one arena serves only that arena's later allocations: the daemon's threads (four workers, the HTTP server, the
adapters' reading threads, the housekeeping jobs) each kept free memory the others could not use. Under the
interpreter lock only one of them allocates at a time anyway. So:

- `limit_arenas`, at the start of every command, before any thread: at most ARENAS arenas, unless the
  operator set MALLOC_ARENA_MAX (then glibc has applied that already). At 100,000 targets, one daemon's first
  cycle peaked at 680 MB instead of 732, and each of three replicas of 300,000 targets at 1,120 MB at most
  instead of 1,201 (bench.daemon_scale, bench.replicas_scale; docs/benchmarks.md, session 34).
- `trim`, once the first cycle is over and then with each of the collector's settles (runtime/heap.py): the
  free memory at the top of each arena, and the free pages inside them, go back to the system (malloc_trim).
  The first cycle's passes free most of what they allocate, and without a trim the process kept those pages.

Neither can fail a command: off glibc (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache
def _glibc() -> Any | None:
    """The process's C library when it is glibc (musl and others have no mallopt arenas or malloc_trim)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas for this process, unless MALLOC_ARENA_MAX is set; whether it was applied.
    Only arenas made after the call are limited: call it before any thread starts."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1


def trim() -> bool:
    """Give the C allocator's free memory back to the system; whether any was."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1
