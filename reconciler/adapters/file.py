"""The file adapter: configuration files in YAML, JSON, TOML, INI or .env.

Writes are staged: the new content goes to a temporary file in the same directory, is parsed back and
fsynced, keeps the original's mode and owner, and replaces the original only if the original did not change
since it was read: by an atomic exchange that is swapped back when another writer got in first (see
atomic.py), or, where the filesystem cannot exchange, by a check and an atomic rename. Staged files that
an interrupted commit left behind are removed by recovery (sweep_staged).

Paths outside the configured roots are refused, for reading too, so that a manifest cannot make the daemon
read (and record) files it has no business with.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from threading import Event
from typing import Any

from reconciler.adapters import atomic, file_watch, fileshape, formats, parsing, regular
from reconciler.adapters.common import apply_changes
from reconciler.domain import filestat, fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.values import strict_equal
from reconciler.errors import ApplyError, ConflictError, DiscoveryError, ReconcilerError
from reconciler.observe import logging as logs
from reconciler.ports import Capabilities, Change, Staged
from reconciler.settings import FileSettings, Settings

log = logs.get_logger("reconciler.adapters.file")


@dataclass(frozen=True)
class _Pending:
    path: Path
    temp: Path | None
    original: bytes  # what the file held when staged: commit refuses if it holds anything else
    content: bytes = b""  # what the commit puts in its place
    undoable: bool = False  # whether the undo log may keep what this write replaced (it touches no secret)


class FileAdapter:
    """Reads and writes one configuration file per target (`source: {adapter: file, path, format}`)."""

    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True, watch=True, local=True)
    known_options = ("path", "format")

    def __init__(self, settings: FileSettings, *, started_s: float | None = None) -> None:
        # Staged files not changed since this (epoch seconds) are left from interrupted commits: sweep_staged
        # removes them. Defaults to now: the adapter is built when its process starts.
        self.started_s = time.time() if started_s is None else started_s
        self._roots = [Path(os.path.realpath(r)) for r in settings.roots]
        self._root_prefixes = [(str(r), str(r).rstrip(os.sep) + os.sep) for r in self._roots]
        # target -> (its source spec, path, format): parsed once per spec, checked on every call
        self._located: dict[str, tuple[object, str, str | None]] = {}
        self._resolved: dict[str, tuple[str, int, int]] = {}  # path -> (real path, its device, its inode)
        self._max_bytes = settings.max_bytes
        # target -> (its source spec, its path as given, the hash of its file's identity, its fingerprint), for
        # files that were not racy when read (fingerprints)
        self._hashed: dict[str, tuple[object, str, int, str]] = {}
        self._trust_stat = settings.trust_stat
        if not settings.watch:
            self.capabilities = replace(self.capabilities, watch=False)
        self._undo = fileshape.UndoLog(settings.undo_dir)
        self._parsing = parsing.ParsePool(settings.parse_workers)

    @classmethod
    def from_settings(cls, settings: Settings) -> FileAdapter:
        return cls(settings.file)

    # -- where and what -------------------------------------------------------------------------------

    def locate(self, target: Target) -> tuple[Path, formats.Format]:
        """The file a target names, resolved against its manifest's folder and checked against the roots.

        The options are parsed once per target spec; the symlink resolution and the roots check run on every
        call, so a symlink re-pointed since (a ConfigMap volume's ..data swap, say) is followed, and never
        out of the roots."""
        _, path, name = self._options(target)
        real = self._resolve(path)
        if not any(real == root or real.startswith(prefix) for root, prefix in self._root_prefixes):
            roots = ", ".join(str(r) for r in self._roots) or "none configured (set RECONCILER_FILE__ROOTS)"
            raise target.problem("spec.source.path", f"{real} is outside the file adapter's roots: {roots}")
        return Path(real), self._format(target, name)

    def _options(self, target: Target) -> tuple[object, str, str | None]:
        """(its source spec, its path as given, its format's name), parsed once per target spec."""
        cached = self._located.get(target.name)
        if cached is None or cached[0] is not target.spec.source:  # new, or its manifest was reloaded
            cached = (target.spec.source, *self._parse_options(target))
            self._located[target.name] = cached
        return cached

    @staticmethod
    def _format(target: Target, name: str | None) -> formats.Format:
        fmt = formats.FORMATS.get(str(name))
        if fmt is None:
            known = ", ".join(formats.FORMATS)
            raise target.problem("spec.source.format", f"unknown format {name!r}; expected one of {known}")
        return fmt

    def watch(
        self, targets: Sequence[Target], changed: Callable[[str], None], ready: Callable[[], None], stop: Event
    ) -> None:
        """The Watcher port: one inotify watcher over the folders of every target's file (file_watch.py)."""

        def paths(target: Target) -> tuple[str, str]:
            real, _ = self.locate(target)
            located = self._located.get(target.name)  # gone if the target was forgotten meanwhile
            if located is None:
                return str(real), str(real)
            resolved = self._resolved.get(located[1])  # the watch keeps the very strings kept here
            return located[1], resolved[0] if resolved is not None else str(real)

        file_watch.watch_files(targets, paths, changed, ready, stop)

    def _resolve(self, path: str) -> str:
        """os.path.realpath(path), which lstat()s every component, kept per path while `path` still leads to
        the same file (device and inode): two stat()s instead. A re-pointed symlink leads to another file,
        so it is resolved (and roots-checked) again."""
        known = self._resolved.get(path)
        if known is not None:
            real, device, inode = known
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and st.st_ino == inode and st.st_dev == device:
                return real
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:
            return real  # missing: the read reports it
        self._resolved[path] = (real, st.st_dev, st.st_ino)
        return real

    def _parse_options(self, target: Target) -> tuple[str, str | None]:
        options = target.spec.source.options()
        unknown = set(options) - set(self.known_options)
        if unknown:
            raise target.problem(f"spec.source.{sorted(unknown)[0]}", "unknown option of the file adapter")
        raw = options.get("path")
        if not isinstance(raw, str) or not raw:
            raise target.problem("spec.source.path", "the file adapter needs a path")
        path = Path(raw).expanduser()
        if not path.is_absolute() and target.origin is not None:
            path = target.origin.file.parent / path
        return str(path), options.get("format") or formats.guess(path.name)

    def _read_bytes(self, path: Path) -> bytes:
        return self._read_stat(path)[0]

    def _read_stat(self, path: Path) -> tuple[bytes, os.stat_result]:
        """The file's bytes and the fstat() of what was read."""
        try:
            return regular.read(path, self._max_bytes)
        except FileNotFoundError:
            raise DiscoveryError(f"{path}: file does not exist") from None
        except OSError as exc:
            raise DiscoveryError(f"{path}: cannot be read: {exc.strerror}") from None

    def _parse(self, path: Path, fmt: formats.Format, data: bytes) -> dict[str, Any]:
        try:
            return fmt.parse(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise DiscoveryError(f"{path}: is not UTF-8 text") from None
        except formats.FormatError as exc:
            raise DiscoveryError(f"{path}: does not parse as {fmt.name}: {exc}") from None

    def _read(self, path: Path, fmt: formats.Format) -> tuple[bytes, dict[str, Any]]:
        data = self._read_bytes(path)
        return data, self._parse(path, fmt, data)

    # -- ports ---------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        path, fmt = self.locate(target)
        data, digest = self._read_hashed(target, path)
        return Observed(digest, str(path), parse=parsing.LiveText(data, fmt.name, lambda: self._parse(path, fmt, data)))

    def parse_ahead(self, reads: Sequence[Observed]) -> None:
        """ports.ParsesAhead: the texts of a batch's reads made ahead, parsed by a worker process meanwhile."""
        self._parsing.parse_ahead(reads)

    def fingerprints(self, targets: Mapping[str, Target]) -> dict[str, str]:
        """Each readable target's file hashed, without building an Observed per target. A file whose identity
        is the one it had when it was last hashed, and that was not racy then (domain/filestat.py), keeps its
        hash without being read (RECONCILER_FILE__TRUST_STAT): one stat() of the path as the target gives it,
        which follows its symlinks. The identity holds the device and inode, so a re-pointed symlink shows as
        a change, and the file is located (resolved, checked against the roots) and read again."""
        seen: dict[str, str] = {}
        hashed = self._hashed
        for name, target in targets.items():
            known = hashed.get(name)
            if known is not None and known[0] is target.spec.source:  # not for a reloaded manifest's target
                try:
                    if hash(filestat.identity(os.stat(known[1]))) == known[2]:
                        seen[name] = known[3]
                        continue
                except OSError:
                    pass  # the read says why
            try:
                seen[name] = self._fingerprint(target)
            except ReconcilerError:
                continue  # its own pass reports why
        return seen

    def _fingerprint(self, target: Target) -> str:
        path, _ = self.locate(target)
        return self._read_hashed(target, path)[1]

    def forget(self, names: Collection[str]) -> None:
        """Drop what is kept of targets this process no longer passes: where each file is, and its last hash."""
        for name in names:
            located = self._located.pop(name, None)
            self._hashed.pop(name, None)
            if located is not None:  # another target of the same path resolves it again, once
                self._resolved.pop(located[1], None)

    def _read_hashed(self, target: Target, path: Path) -> tuple[bytes, str]:
        """The bytes of `target`'s file at `path` (located) and their fingerprint, kept for the bulk
        fingerprints while the file's identity stands (a pass's own read counts too)."""
        started = time.time_ns()
        data, st = self._read_stat(path)
        digest = fingerprint.of_bytes(data)
        located = self._located.get(target.name)  # gone if the target was forgotten meanwhile
        if located is not None and self._trust_stat and not filestat.racy(st, started):
            source, given, _ = located
            self._hashed[target.name] = (source, given, hash(filestat.identity(st)), digest)
        else:
            self._hashed.pop(target.name, None)
        return data, digest

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        # The format alone: where the file is (symlinks resolved, roots checked) is the read's and the write's
        # to find out, and resolving it here as well cost a pass two stat()s.
        fmt = self._format(target, self._options(target)[2])
        if not fmt.strings_only:
            return desired
        for key, value in desired.items():
            nested = isinstance(value, dict)
            if fmt.name == "env" and nested:
                raise target.problem(f"spec.desired.{key}", "a .env file holds no nested keys")
            if fmt.name == "ini" and not nested:
                raise target.problem(f"spec.desired.{key}", "an INI file holds keys inside [sections]")
        return dict(formats.stringify(desired))

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        path, fmt = self.locate(target)
        data, current = self._read(path, fmt)
        updated, results, messages = apply_changes(
            current, changes, target.list_keys(), dry_run=dry_run, where=str(path)
        )
        staged = Staged(target.name, results, messages, dry_run, _Pending(path, None, data))
        if not staged.writes:
            return staged
        content = self._render_checked(path, fmt, data, current, updated)
        if not dry_run:
            undoable = not fileshape.touches_secret(target, changes)
            temp = _write_temp(path, content, fmt)
            staged.handle = _Pending(path, temp, data, content.encode("utf-8"), undoable)
        return staged

    def commit(self, staged: Staged) -> None:
        """Put the staged file in place of the original if the original still holds what stage read; else a
        ConflictError, and the other writer's content is what stays live (atomic.swap_in says why, in any
        order of events). Where the exchange is not supported, a check and then a rename, as announced in
        the log: a change between the two is overwritten there."""
        pending: _Pending = staged.handle
        if pending.temp is None:
            return
        try:
            now = pending.path.read_bytes()
        except OSError as exc:
            self.discard(staged)
            raise ApplyError(f"{pending.path}: cannot be re-read before commit: {exc.strerror}") from None
        if now != pending.original:  # the usual conflict, refused before anything is swapped
            self.discard(staged)
            raise ConflictError(f"{pending.path}: changed by another writer while the change was staged")
        try:
            swapped = atomic.swap_in(pending.temp, pending.path, pending.original)
        except OSError as exc:  # raised only before anything was swapped
            self.discard(staged)
            raise ApplyError(f"{pending.path}: atomic exchange failed: {exc.strerror}") from None
        if not swapped:
            try:
                os.replace(pending.temp, pending.path)
                atomic.fsync_dir(pending.path.parent)
            except OSError as exc:
                self.discard(staged)
                raise ApplyError(f"{pending.path}: atomic rename failed: {exc.strerror}") from None
        try:
            self._undo.remember(pending.path, pending.original, pending.content, keep=pending.undoable)
        except (OSError, UnicodeDecodeError) as exc:  # the write itself is done; only a later exact undo is lost
            log.warning("could not keep what the write replaced", path=str(pending.path), error=type(exc).__name__)

    def sweep_staged(self, target: Target) -> list[str]:
        """Remove the staged files that interrupted commits left beside the target's file: only this
        adapter's own (`.<name>.<random>.reconciler-tmp`, regular files) and only those not changed since
        this adapter was built, so that a commit in progress in a younger process is never disturbed."""
        path, _ = self.locate(target)
        return [str(p) for p in atomic.sweep(path, changed_before_s=self.started_s)]

    def discard(self, staged: Staged) -> None:
        pending: _Pending | None = staged.handle
        if pending is not None and pending.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                pending.temp.unlink()

    def _render_checked(
        self, path: Path, fmt: formats.Format, data: bytes, current: dict[str, Any], doc: dict[str, Any]
    ) -> str:
        """The file's new text: its original bytes when this undoes reconciler's last write and nothing else
        changed since; else the live text edited in place; else (an editor could not keep the shape) the
        whole document rendered, as announced in the log. Each candidate must read back as `doc`."""
        restored = self._undo.restore(path, data)
        if restored is not None and _reads_back(fmt, restored.decode("utf-8"), doc):
            return restored.decode("utf-8")
        edited = fileshape.rewrite(fmt, data.decode("utf-8"), current, doc)
        if edited is not None:
            return edited
        log.warning("rewriting the whole file: its shape could not be kept", path=str(path), format=fmt.name)
        try:
            content = fmt.render(doc)
        except formats.FormatError as exc:
            raise ApplyError(f"{path}: the new content cannot be written as {fmt.name}: {exc}") from None
        if not _reads_back(fmt, content, doc):
            raise ApplyError(f"{path}: the new content does not read back as written in {fmt.name}")
        return content


def _reads_back(fmt: formats.Format, content: str, doc: dict[str, Any]) -> bool:
    try:
        return strict_equal(fmt.parse(content), doc)
    except formats.FormatError:
        return False


def _write_temp(path: Path, content: str, fmt: formats.Format) -> Path:
    """Write `content` beside `path`, fsynced, with the original's mode and owner, parsed back from disk."""
    st = path.stat()
    fd, name = tempfile.mkstemp(prefix=atomic.staged_prefix(path), suffix=atomic.STAGED_SUFFIX, dir=path.parent)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, st.st_mode & 0o7777)
        if hasattr(os, "chown"):
            with contextlib.suppress(PermissionError):
                os.chown(temp, st.st_uid, st.st_gid)
        fmt.parse(temp.read_text(encoding="utf-8"))
    except (OSError, formats.FormatError) as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise ApplyError(f"{path}: staging the new content failed: {exc}") from None
    return temp
