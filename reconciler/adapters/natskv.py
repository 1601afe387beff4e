"""The NATS JetStream key-value adapter: a bucket (or the keys under a prefix in it) as a flat document.

source options:
  url: nats://127.0.0.1:4222     # default
  bucket: payments               # required
  prefix: "prod."                # only keys that start with it, named without it (default: every key)
  user: reconciler               # with password, or
  password: nats-prod            # a credential name (RECONCILER_ADAPTERS__CREDENTIALS)
  token: nats-token              # a credential name, for token auth

Values are UTF-8 strings. Every write names the revision it expects (create for a new key, update and delete
with the revision read while staging), so a writer that got there first is a conflict. NATS has no
multi-key transaction: when a write of several keys meets a conflict part way, the keys already written are
put back (each again with its expected revision) before the conflict is reported. Watching subscribes to
the bucket's updates.

nats-py is asyncio-only; the adapter runs one event loop in a thread of its own and waits for each call
with the configured timeout, so the rest of reconciler stays synchronous.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors

from reconciler.adapters.common import Credentials, Options, apply_changes, flat_strings
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ApplyError, ConflictError, DiscoveryError, ReconcilerError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

T = TypeVar("T")
OPTIONS = ("url", "bucket", "prefix", "user", "password", "token")


@dataclass(frozen=True)
class _Where:
    url: str
    bucket: str
    prefix: str
    user: str | None
    password: str | None
    token: str | None

    @property
    def server(self) -> tuple[str, str | None, str | None, str | None]:
        return (self.url, self.user, self.password, self.token)

    @property
    def location(self) -> str:
        return f"{self.url} bucket {self.bucket}" + (f" {self.prefix}*" if self.prefix else "")


class NatsKvAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, compare_and_swap=True, watch=True, strings_only=True)

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._credentials = Credentials(settings)
        self._connections: dict[tuple[str, str | None, str | None, str | None], Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> NatsKvAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._where(target)

    def _where(self, target: Target) -> _Where:
        options = Options.of(target, "nats-kv", OPTIONS)
        url = options.text("url", "nats://127.0.0.1:4222")
        if not url.startswith(("nats://", "tls://")):
            raise options.problem("url", "must be a nats:// or tls:// URL")
        if "@" in url:
            raise options.problem("url", "holds credentials: use user and password (a credential name) instead")
        user = options.text("user", None)
        password = self._credentials.get(options, "password")
        if (user is None) != (password is None):
            raise options.problem("user", "give both user and password, or neither")
        token = self._credentials.get(options, "token")
        return _Where(url, options.text("bucket"), options.text("prefix", ""), user, password, token)

    # -- the event loop and connections ---------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], where: _Where, error: type[ReconcilerError]) -> T:
        loop = self._event_loop()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(self._timeout * 3)
        except TimeoutError:
            future.cancel()
            raise error(f"{where.location}: no answer within {self._timeout * 3:g}s") from None
        except nats.js.errors.BucketNotFoundError:
            raise error(f"{where.location}: the bucket does not exist") from None
        except nats.errors.AuthorizationError as exc:
            raise AccessDenied(f"{where.url}: the server refused the credentials: {self._scrub(exc)}") from None
        except (nats.errors.Error, OSError) as exc:
            text = self._scrub(exc) or type(exc).__name__
            if "authorization" in text.lower():
                raise AccessDenied(f"{where.url}: the server refused the credentials: {text}") from None
            raise error(f"{where.location}: {text}") from None

    def close(self) -> None:
        """Close the connections and stop the event loop (at shutdown, and in tests)."""
        loop = self._loop
        if loop is None:
            return

        async def close_all() -> None:
            for nc in self._connections.values():
                if not nc.is_closed:
                    await nc.close()

        asyncio.run_coroutine_threadsafe(close_all(), loop).result(self._timeout * 3)
        self._connections.clear()
        loop.call_soon_threadsafe(loop.stop)
        with self._lock:
            self._loop = None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = self._loop = asyncio.new_event_loop()

                def run() -> None:
                    loop.run_forever()
                    loop.close()

                threading.Thread(target=run, name="nats-kv", daemon=True).start()
            return self._loop

    def _scrub(self, exc: BaseException) -> str:
        return self._credentials.scrub(str(exc))

    async def _kv(self, where: _Where) -> Any:
        nc = self._connections.get(where.server)
        if nc is None or nc.is_closed:
            failures: list[BaseException] = []

            async def error_cb(exc: BaseException) -> None:
                failures.append(exc)

            try:
                nc = await nats.connect(
                    where.url,
                    user=where.user,
                    password=where.password,
                    token=where.token,
                    connect_timeout=self._timeout,
                    # Try the server twice, 0.1 s apart, and give up: the queue retries the pass later.
                    # (0 would mean "never give up" on the first connect.)
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    error_cb=error_cb,
                    name="reconciler",
                )
            except nats.errors.NoServersError:
                if failures and "authorization" in str(failures[-1]).lower():
                    raise nats.errors.AuthorizationError from None
                reason = f": {failures[-1]}" if failures else ""
                raise nats.errors.Error(f"cannot reach the NATS server{reason}") from None
            self._connections[where.server] = nc
        return await nc.jetstream(timeout=self._timeout).key_value(where.bucket)

    async def _entries(self, where: _Where) -> dict[str, tuple[bytes, int]]:
        """Every live key under the prefix: value and revision, from one watcher's initial snapshot."""
        kv = await self._kv(where)
        watcher = await kv.watch(f"{where.prefix}>", ignore_deletes=True)
        entries: dict[str, tuple[bytes, int]] = {}
        try:
            while True:
                entry = await watcher.updates(timeout=self._timeout)
                if entry is None:
                    break
                entries[entry.key[len(where.prefix) :]] = (entry.value or b"", entry.revision)
        finally:
            await watcher.stop()
        return entries

    def _read(self, where: _Where, error: type[ReconcilerError]) -> tuple[dict[str, str], dict[str, int], bytes]:
        entries = self._run(self._entries(where), where, error)
        document: dict[str, str] = {}
        for key, (raw, _) in entries.items():
            try:
                document[key] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{where.location}: the value of {where.prefix}{key} is not UTF-8 text") from None
        digest = hashlib.sha256()
        for key in sorted(entries):
            digest.update(f"{key}\0{entries[key][1]}\0".encode())
        return document, {k: r for k, (_, r) in entries.items()}, digest.digest()

    # -- ports ------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        where = self._where(target)
        document, _, digest = self._read(where, DiscoveryError)
        return Observed(fingerprint.of_bytes(digest), where.location, document=dict(document))

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return flat_strings(target, desired, "a NATS KV bucket")

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        where = self._where(target)
        current, revisions, _ = self._read(where, ApplyError)
        if any(len(c.path) != 1 for c in changes):
            raise ApplyError(f"{where.location}: a NATS KV bucket holds no nested keys")
        _, results, messages = apply_changes(dict(current), changes, {}, dry_run=dry_run, where=where.location)
        writes = [
            (c.path[0], c.after, revisions.get(c.path[0], 0), c.before)
            for c, r in zip(changes, results, strict=True)
            if r is ChangeResult.WRITE
        ]
        return Staged(target.name, results, messages, dry_run, (where, writes))

    def commit(self, staged: Staged) -> None:
        where, writes = staged.handle
        if staged.dry_run or not writes:
            return
        self._run(self._write(where, writes), where, ApplyError)

    async def _write(self, where: _Where, writes: list[tuple[str, Any, int, Any]]) -> None:
        kv = await self._kv(where)
        done: list[tuple[str, Any, int, Any]] = []  # key, value written, its new revision, the value before
        try:
            for key, after, revision, before in writes:
                name = where.prefix + key
                if after is MISSING:
                    await kv.delete(name, last=revision)
                    new = 0
                elif revision == 0:
                    new = await kv.create(name, str(after).encode())
                else:
                    new = await kv.update(name, str(after).encode(), last=revision)
                done.append((key, after, new, before))
        except nats.js.errors.KeyWrongLastSequenceError:
            for key, _, new, before in reversed(done):  # put back what this write changed, still guarded
                name = where.prefix + key
                if before is MISSING:
                    await kv.delete(name, last=new or None)
                elif new:
                    await kv.update(name, str(before).encode(), last=new)
                else:
                    await kv.create(name, str(before).encode())
            raise ConflictError(
                f"{where.location}: {where.prefix}{writes[len(done)][0]} changed after it was read; "
                f"{len(done)} key(s) already written were put back"
            ) from None

    def discard(self, staged: Staged) -> None:
        """Nothing is written before commit."""

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """One watcher per bucket; each update wakes the target whose prefix holds the key."""
        buckets: dict[tuple[Any, str], list[tuple[str, str]]] = {}
        wheres: dict[tuple[Any, str], _Where] = {}
        for target in targets:
            where = self._where(target)
            buckets.setdefault((where.server, where.bucket), []).append((where.prefix, target.name))
            wheres[(where.server, where.bucket)] = where
        first = next(iter(wheres.values()), None)
        if first is None:
            stop.wait()
            return

        async def run() -> None:
            watchers = []
            try:
                for key, prefixes in buckets.items():
                    kv = await self._kv(wheres[key])
                    watcher = await kv.watchall()
                    ordered = sorted(prefixes, key=lambda p: -len(p[0]))
                    watchers.append((watcher, ordered, False))
                ready()  # every consumer exists: JetStream delivers each later update to it
                while not stop.is_set():
                    for i, (watcher, ordered, live) in enumerate(watchers):
                        try:
                            entry = await watcher.updates(timeout=0.2)
                        except nats.errors.TimeoutError:
                            continue
                        if entry is None:  # the end of the initial snapshot: later entries are changes
                            watchers[i] = (watcher, ordered, True)
                            continue
                        if not live:
                            continue  # a value from before the watch began
                        for prefix, name in ordered:
                            if entry.key.startswith(prefix):
                                changed(name)
                                break
            finally:
                for watcher, _, _ in watchers:
                    await watcher.stop()

        loop = self._event_loop()
        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            future.result()
        except (nats.errors.Error, OSError) as exc:
            raise DiscoveryError(f"{first.location}: the watch broke: {self._scrub(exc)}") from None
