"""Replace a file only if it holds what was expected, with no window for another writer to be overwritten.

The tool is Linux's renameat2(RENAME_EXCHANGE), called through ctypes: it swaps two names in one atomic
step, and both files survive, each under the other's name. So a commit puts its staged file live first and
looks at what it took out afterwards; if that is not what it expected, it swaps back (see `swap_in`). Where
the call is missing (not Linux, a C library older than glibc 2.28, a kernel older than 3.15) or the
filesystem does not support it, `exchange` says so by returning False, nothing has been touched, and the
caller falls back to checking and then renaming.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from reconciler.errors import ApplyError, ConflictError
from reconciler.observe import logging as logs

log = logs.get_logger("reconciler.adapters.atomic")

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# ENOSYS: the kernel has no renameat2. EINVAL: this filesystem does not support RENAME_EXCHANGE (our flags
# are otherwise valid). Either way the call did nothing.
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})

STAGED_SUFFIX = ".reconciler-tmp"  # a staged file is `.<name>.<random>.reconciler-tmp` beside its target
_WORD = re.compile(r"[A-Za-z0-9_]+")  # tempfile's random part: no dot, so another file's staged name never matches
_MAX_SWAPS = 8  # swaps back before giving up on a file that other writers keep replacing (then: kept aside)
KEPT_SUFFIX = ".reconciler-kept"  # content set aside when a swap back could not settle; never swept

_Renameat2 = Callable[[int, bytes, int, bytes, int], int]


def _load() -> _Renameat2 | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # no C library to load, or one without renameat2 (glibc < 2.28, musl)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2: _Renameat2 | None = _load()
_warned: set[object] = set()  # where the fallback has been announced: "process", or a filesystem's device
_warned_lock = threading.Lock()


def exchange(a: Path, b: Path) -> bool:
    """Swap the files at `a` and `b` atomically (both must exist, on one filesystem). True when swapped;
    False when this system or filesystem cannot, in which case nothing changed and the caller falls back
    (announced once in the log per process or filesystem). Any other failure raises OSError."""
    if _renameat2 is None:
        _announce("process", "renameat2 is not available on this system")
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        try:
            device: object = os.stat(a.parent).st_dev
        except OSError:
            device = str(a.parent)
        _announce(device, f"the filesystem of {a.parent} does not support RENAME_EXCHANGE")
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _announce(where: object, why: str) -> None:
    with _warned_lock:
        if where in _warned:
            return
        _warned.add(where)
    log.warning(
        "file commits fall back to check-then-rename",
        why=why,
        risk="a change by another writer between the check and the rename is overwritten",
    )


class _Snapshot(NamedTuple):
    """Which file a name held (device, inode) and its bytes (None when it is not a regular file)."""

    device: int
    inode: int
    data: bytes | None


def swap_in(staged: Path, path: Path, expected: bytes) -> bool:
    """Put `staged` live at `path` if `path` holds `expected`, atomically. False: this system or filesystem
    cannot exchange, nothing was done (the caller falls back). An OSError is raised only when nothing was
    swapped (the caller discards `staged`). Otherwise `staged` is gone when this returns (or is kept aside,
    named in the ConflictError), and a ConflictError means `path` holds what it would hold had this commit
    never run.

    Why nothing is lost, in any order: an exchange destroys no file, so only the unlinks here could lose
    something, and each unlinks only content that is either (a) what the commit expected to replace, or (b)
    what the commit itself put live a step before, unchanged (same inode, same bytes) since. In detail:
    1. exchange: `path` holds our content; `staged` holds what `path` held at that instant.
    2. If that equals `expected`, nobody got in first: it is (a), unlink it. A writer who replaces `path`
       from now on simply wins over us, as it would have a moment later.
    3. Otherwise another writer got in first: exchange again, which puts their content back live and hands
       us what `path` held at that instant. If that is our own content, unchanged, it is (b): unlink it.
       If not, a newer writer replaced (or rewrote in place) our content between the two exchanges: its
       content is the latest, so exchange once more to put it live, and check that what comes out is what
       we put there in the exchange before, and so on (at most `_MAX_SWAPS` times, then what `staged`
       holds is kept aside, not deleted). Content taken out this way was superseded by the newer write,
       just as it would have been without us.
    Not covered (no rename-based writer can): a writer who writes in place through a descriptor opened
    before step 1 writes to the file that step 2 unlinks; and our content is briefly live in step 1-3 of a
    conflict. Killed between steps 1 and 3, the replaced content is left in `staged`: recovery's sweep
    removes such files, so that one double fault (a racing writer and a kill within microseconds) can lose
    the racing write."""
    ours = _snapshot(staged)
    if not exchange(staged, path):
        return False
    try:
        replaced = _snapshot(staged)
    except OSError:
        replaced = None
    if replaced is not None and replaced.data == expected:
        _remove(staged)
        return True
    kept = _restore(staged, path, ours)
    where = f"; what the swap back took out is kept in {kept}" if kept is not None else ""
    raise ConflictError(f"{path}: changed by another writer while the change was committed; swapped back{where}")


def _restore(staged: Path, path: Path, placed: _Snapshot) -> Path | None:
    """Swap back until what comes out is what this commit put live, unchanged (step 3 of `swap_in`); then
    remove it. Returns where content was kept aside when that could not be settled, else None."""
    try:
        for _ in range(_MAX_SWAPS):
            putting = _snapshot(staged)
            if not exchange(staged, path):  # it worked a moment ago: the filesystem was changed under us
                break
            if _snapshot(staged) == placed:
                _remove(staged)
                return None
            placed = putting
    except OSError as exc:
        log.warning("swap back failed; keeping what it holds", path=str(path), staged=str(staged), error=str(exc))
    return _keep(staged)


def _snapshot(name: Path) -> _Snapshot:
    """What `name` holds, read without following a symlink and without blocking on a FIFO or device."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _Snapshot(st.st_dev, st.st_ino, None)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return _Snapshot(st.st_dev, st.st_ino, b"".join(chunks))
    finally:
        os.close(fd)


def _remove(staged: Path) -> None:
    try:
        staged.unlink()
        fsync_dir(staged.parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ApplyError(f"{staged}: could not be removed after the exchange: {exc.strerror}") from None


def _keep(staged: Path) -> Path | None:
    kept = staged.with_name(staged.name.removesuffix(STAGED_SUFFIX) + KEPT_SUFFIX)
    try:
        os.rename(staged, kept)
        fsync_dir(staged.parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("could not keep content aside", staged=str(staged), error=str(exc))
        return staged
    log.warning("content kept aside after a conflicted commit", kept=str(kept))
    return kept


def staged_prefix(path: Path) -> str:
    """How the names of files staged for `path` begin (they end with STAGED_SUFFIX)."""
    return f".{path.name}."


def sweep(path: Path, *, changed_before_s: float) -> list[Path]:
    """Remove the files staged for `path` that interrupted commits left behind: regular files named as
    `staged_prefix(path)` + one word + STAGED_SUFFIX, not changed (content, name or mode: ctime and mtime)
    since `changed_before_s` (epoch seconds). An exchange and a stage both set ctime, so a commit still in
    progress in a process younger than that time is left alone. Nothing else is touched: no other name,
    no symlink, no content kept aside by a conflicted commit."""
    prefix = staged_prefix(path)
    removed: list[Path] = []
    with os.scandir(path.parent) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(STAGED_SUFFIX)):
                continue
            if not _WORD.fullmatch(name[len(prefix) : -len(STAGED_SUFFIX)]):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and max(st.st_mtime, st.st_ctime) < changed_before_s:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except FileNotFoundError:
                continue  # gone meanwhile: its commit finished
    if removed:
        fsync_dir(path.parent)
    return removed


def fsync_dir(directory: Path) -> None:
    """Make the renames and unlinks in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
