"""Reading a live file: a regular file only, of a bounded size, checked on what was opened (a FIFO would hold
the reading worker, and with it every target of its batch, until something writes to it; a device or a file
larger than the bound would fill memory). The file adapter reads every live file through here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler.errors import DiscoveryError

# Non-blocking, so that opening a FIFO (or a device) returns at once instead of waiting for a writer; it is
# then refused by its type. Reads of a regular file ignore O_NONBLOCK.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def read(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at `path`, at most `max_bytes` of them, and the fstat() of what was opened;
    anything else is refused (DiscoveryError)."""
    fd = os.open(path, _READ_FLAGS)
    try:
        st = os.fstat(fd)  # of what was opened: a path swapped after a stat() cannot slip a FIFO in
        if not stat.S_ISREG(st.st_mode):
            raise DiscoveryError(f"{path}: is {kind(st.st_mode)}, not a regular file; refusing to read it")
        if st.st_size > max_bytes:
            raise DiscoveryError(f"{path}: {st.st_size} bytes, more than RECONCILER_FILE__MAX_BYTES ({max_bytes})")
        parts: list[bytes] = []
        total = 0
        want = st.st_size + 1  # one past its size, so that one read usually sees the end as well
        while chunk := os.read(fd, min(want, max_bytes + 1 - total)):
            parts.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew since the fstat
                raise DiscoveryError(f"{path}: more than RECONCILER_FILE__MAX_BYTES ({max_bytes}) bytes")
            want = 1 << 16
        return b"".join(parts), st
    finally:
        os.close(fd)


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a file")
