"""When a file may be taken to hold what it held: its identity (device, inode, size, modification and change
time) is unchanged, and it was last read at least RACY_NS after its last change.

The change time moves on every write and cannot be set back (`touch -d` and `rsync -t` set only the
modification time), and a file replaced by a rename is another inode. Two writes within one tick of the
filesystem's clock can still leave all of that alone, so a file read within RACY_NS of its last change is
"racy" (git's word for it): it is read again on the next look, until it has been seen older than that.
Manifests (desired/files.py) and live files (adapters/file.py) are both kept this way.
"""

from __future__ import annotations

import os

RACY_NS = 2_000_000_000  # above the coarsest timestamps of a local filesystem (FAT's 2 s)
Identity = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def racy(st: os.stat_result, read_ns: int) -> bool:
    """Whether a file whose stat is `st`, read from `read_ns` on (time.time_ns()), may have changed again within
    the same tick of its filesystem's clock without its identity showing it."""
    return read_ns - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS
