"""The Redis adapters: a server's configuration (`redis-config`) and the keys under a prefix (`redis-keys`).

Both take the connection options
  host: 127.0.0.1   port: 6379   db: 0   username: reconciler (ACL user, optional)
  password: redis-prod    # a credential name (RECONCILER_ADAPTERS__CREDENTIALS)

redis-config: CONFIG GET / CONFIG SET. Only the parameters named in `desired` (and `include` globs) are read.
Values compare in Redis's own terms: `100mb` is 104857600 (k/m/g are powers of 1000, kb/mb/gb of 1024, as in
redis.conf), booleans are yes/no, repeated spaces do not count, and flag sets (notify-keyspace-events) compare
as sets. The write is one CONFIG SET of every changed parameter, which Redis applies all or nothing. Redis
has no compare-and-swap for configuration: the values are compared again just before the write.

redis-keys: the keys under `prefix` (required), as a document: a string key is a string, a hash a map of
strings; any other type is an error for that target. Writes are compare-and-swap: WATCH the keys, compare,
MULTI/EXEC; a writer that got there first aborts the transaction (a conflict). Watching uses keyspace
notifications, which the server must have enabled (notify-keyspace-events with K plus $, h and g, or KA).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from reconciler.adapters.common import Credentials, Options, apply_changes, scalar_string
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING
from reconciler.domain.values import holds
from reconciler.errors import AccessDenied, ApplyError, ConflictError, DiscoveryError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

CONNECTION = ("host", "port", "db", "username", "password")
MEMORY = re.compile(r"^\s*(\d+)\s*(k|kb|m|mb|g|gb)\s*$", re.IGNORECASE)
UNITS = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
FLAG_SETS = {"notify-keyspace-events": ("A", "g$lshzxetd")}  # parameter -> (shorthand, what it stands for)
TRUE = {"yes", "true", "on", "1"}
FALSE = {"no", "false", "off", "0"}


@dataclass(frozen=True)
class _Server:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"redis://{user}{self.host}:{self.port}/{self.db}"


class _RedisBase:
    """Connection handling both Redis adapters share."""

    name = "redis"
    known_options: tuple[str, ...] = CONNECTION

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._credentials = Credentials(settings)
        # redis-py's type hints are partial (its responses are Any): clients are typed Any here.
        self._clients: dict[_Server, Any] = {}
        self._lock = threading.Lock()

    def _options(self, target: Target) -> tuple[Options, _Server]:
        options = Options.of(target, self.name, self.known_options)
        server = _Server(
            options.text("host", "127.0.0.1"),
            options.integer("port", 6379),
            options.integer("db", 0),
            options.text("username", None),
            self._credentials.get(options, "password"),
        )
        return options, server

    def _client(self, server: _Server) -> Any:
        with self._lock:
            client = self._clients.get(server)
            if client is None:
                client = redis.Redis(
                    host=server.host,
                    port=server.port,
                    db=server.db,
                    username=server.username,
                    password=server.password,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    decode_responses=True,
                    # Retries happen at one level only: around whole adapter calls (runtime/retry.py).
                    retry=Retry(NoBackoff(), 0),
                )
                self._clients[server] = client
            return client

    @contextmanager
    def _errors(self, server: _Server, error: type[Exception]) -> Iterator[None]:
        """Turn the client's exceptions into reconciler's, naming the server and never a password."""
        try:
            yield
        except redis.exceptions.WatchError:
            raise ConflictError(f"{server}: a watched key changed before the transaction ran") from None
        except redis.exceptions.AuthenticationError as exc:
            raise AccessDenied(f"{server}: the server refused the credentials: {self._scrub(exc)}") from None
        except redis.exceptions.ResponseError as exc:
            if "NOAUTH" in str(exc) or "NOPERM" in str(exc) or "WRONGPASS" in str(exc):
                raise AccessDenied(f"{server}: {self._scrub(exc)}") from None
            raise error(f"{server}: {self._scrub(exc)}") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise error(f"{server}: cannot reach the server: {self._scrub(exc)}") from None

    def _scrub(self, exc: Exception) -> str:
        return self._credentials.scrub(str(exc))


class RedisConfigAdapter(_RedisBase):
    """A Redis server's configuration parameters."""

    name = "redis-config"
    known_options = (*CONNECTION, "include")
    capabilities = Capabilities(read=True, write=True, strings_only=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisConfigAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        options, _ = self._options(target)
        options.strings("include")

    def discover(self, target: Target) -> Observed:
        options, server = self._options(target)
        include = options.strings("include")
        with self._errors(server, DiscoveryError):
            live: dict[str, str] = self._client(server).config_get("*")
        wanted = set(target.spec.desired)
        unknown = sorted(wanted - set(live))
        if unknown:
            raise target.problem(f"spec.desired.{unknown[0]}", f"{server} has no parameter named {unknown[0]!r}")
        document = {
            k: _config_value(k, v)
            for k, v in live.items()
            if k in wanted or any(re.fullmatch(_glob(g), k) for g in include)
        }
        data = json.dumps(document, sort_keys=True).encode()
        return Observed(fingerprint.of_bytes(data), str(server), document=document)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in desired.items():
            if isinstance(value, (dict, list)) or value is None:
                raise target.problem(f"spec.desired.{key}", "a Redis parameter holds a single value")
            text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
            out[key] = _config_value(key, text)
        return out

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        _, server = self._options(target)
        with self._errors(server, ApplyError):
            live = self._client(server).config_get("*")
        current = {k: _config_value(k, v) for k, v in live.items()}
        _, results, messages = apply_changes(current, changes, {}, dry_run=dry_run, where=str(server))
        if any(c.after is MISSING for c, r in zip(changes, results, strict=True) if r is ChangeResult.WRITE):
            raise ApplyError(f"{server}: a Redis parameter cannot be removed, only set")
        writes = {c.path[0]: c for c, r in zip(changes, results, strict=True) if r is ChangeResult.WRITE}
        return Staged(target.name, results, messages, dry_run, (server, writes))

    def commit(self, staged: Staged) -> None:
        server, writes = staged.handle
        if staged.dry_run or not writes:
            return
        client = self._client(server)
        with self._errors(server, ApplyError):
            live = client.config_get("*")
            for name, change in writes.items():
                if not holds(_config_value(name, live.get(name, "")), change.before):
                    raise ConflictError(f"{server}: {name} was changed by another writer while staged")
            # One CONFIG SET of several parameters is applied all or nothing (Redis 7).
            client.execute_command("CONFIG", "SET", *[x for name, c in writes.items() for x in (name, c.after)])

    def discard(self, staged: Staged) -> None:
        """Nothing is written before commit."""


class RedisKeysAdapter(_RedisBase):
    """The string and hash keys under a prefix."""

    name = "redis-keys"
    known_options = (*CONNECTION, "prefix")
    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True, watch=True, strings_only=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisKeysAdapter:
        return cls(settings)

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._prefix(target)

    def _prefix(self, target: Target) -> tuple[_Server, str]:
        options, server = self._options(target)
        return server, options.text("prefix")

    def _read(self, client: Any, server: _Server, prefix: str, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The document under `prefix` (or only `keys`, full names), read with `client` (a client or a pipeline
        in WATCH mode)."""
        if keys is None:
            keys = sorted(client.scan_iter(match=_escape(prefix) + "*", count=1000))
        document: dict[str, Any] = {}
        for key in keys:
            kind = client.type(key)
            if kind == "none":
                continue
            if kind == "string":
                document[key[len(prefix) :]] = client.get(key)
            elif kind == "hash":
                document[key[len(prefix) :]] = client.hgetall(key)
            else:
                raise DiscoveryError(f"{server}: key {key!r} is a {kind}; only strings and hashes are compared")
        return document

    def discover(self, target: Target) -> Observed:
        server, prefix = self._prefix(target)
        with self._errors(server, DiscoveryError):
            document = self._read(self._client(server), server, prefix)
        data = json.dumps(document, sort_keys=True).encode()
        return Observed(fingerprint.of_bytes(data), f"{server} {prefix}*", document=document)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in desired.items():
            if isinstance(value, dict):
                nested = [k for k, v in value.items() if isinstance(v, (dict, list)) or v is None]
                if nested:
                    raise target.problem(f"spec.desired.{key}.{nested[0]}", "a hash field holds a plain value")
                out[key] = {k: scalar_string(v) for k, v in value.items()}
            elif isinstance(value, list) or value is None:
                raise target.problem(f"spec.desired.{key}", "a key holds a string or a hash (a map of strings)")
            else:
                out[key] = scalar_string(value)
        return out

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        server, prefix = self._prefix(target)
        keys = sorted({prefix + c.path[0] for c in changes})
        pipe = self._client(server).pipeline(transaction=True)
        try:
            with self._errors(server, ApplyError):
                pipe.watch(*keys)  # from here on, a change of any of these keys by anyone aborts the commit
                current = self._read(pipe, server, prefix, keys)
            updated, results, messages = apply_changes(current, changes, {}, dry_run=dry_run, where=str(server))
        except BaseException:
            pipe.reset()
            raise
        if dry_run or ChangeResult.WRITE not in results:
            pipe.reset()
            return Staged(target.name, results, messages, dry_run, None)
        return Staged(target.name, results, messages, dry_run, (server, prefix, pipe, current, updated))

    def commit(self, staged: Staged) -> None:
        if staged.handle is None:
            return
        server, prefix, pipe, current, updated = staged.handle
        try:
            with self._errors(server, ApplyError):
                pipe.multi()
                for name in sorted({*current, *updated}):
                    before, after = current.get(name, MISSING), updated.get(name, MISSING)
                    if holds(before, after):
                        continue
                    key = prefix + name
                    if after is MISSING or (isinstance(before, dict) != isinstance(after, dict)):
                        pipe.delete(key)
                    if isinstance(after, dict):
                        gone = [f for f in before if f not in after] if isinstance(before, dict) else []
                        if gone:
                            pipe.hdel(key, *gone)
                        if after:
                            pipe.hset(key, mapping=after)
                    elif after is not MISSING:
                        pipe.set(key, after)
                pipe.execute()
        finally:
            pipe.reset()

    def discard(self, staged: Staged) -> None:
        if staged.handle is not None:
            staged.handle[2].reset()

    def watch(
        self,
        targets: Sequence[Target],
        changed: Callable[[str], None],
        ready: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        """Keyspace notifications of every target's prefix, one subscription per server."""
        by_server: dict[_Server, list[tuple[str, str]]] = {}
        for target in targets:
            server, prefix = self._prefix(target)
            by_server.setdefault(server, []).append((prefix, target.name))
        subscriptions = []
        try:
            for server, prefixes in by_server.items():
                with self._errors(server, DiscoveryError):
                    flags = self._client(server).config_get("notify-keyspace-events").get("notify-keyspace-events")
                    expanded = set(flags or "").union("g$lshzxetd" if "A" in (flags or "") else "")
                    if "K" not in expanded or not {"$", "h", "g"} <= expanded:
                        raise DiscoveryError(
                            f"{server}: keyspace notifications are off (notify-keyspace-events={flags!r}); set it "
                            "to include K, $, h and g (e.g. KA) to watch, or rely on the interval"
                        )
                    pubsub = self._client(server).pubsub()
                    channel = f"__keyspace@{server.db}__:"
                    patterns = {channel + _escape(p) + "*" for p, _ in prefixes}
                    pubsub.psubscribe(*patterns)
                    # Subscribed once Redis has confirmed every pattern: only then is no change missed.
                    confirmed = 0
                    deadline = time.monotonic() + self._timeout
                    while confirmed < len(patterns):
                        if time.monotonic() > deadline:
                            raise DiscoveryError(f"{server}: the keyspace subscription was not confirmed in time")
                        message = pubsub.get_message(timeout=0.2)
                        confirmed += message is not None and message["type"] == "psubscribe"
                subscriptions.append((server, pubsub, channel, sorted(prefixes, key=lambda p: -len(p[0]))))
            ready()
            while not stop.is_set():
                for server, pubsub, channel, prefixes in subscriptions:
                    with self._errors(server, DiscoveryError):
                        message = pubsub.get_message(timeout=0.2)
                    if message is None or message["type"] != "pmessage":
                        continue
                    key = str(message["channel"])[len(channel) :]
                    for prefix, name in prefixes:
                        if key.startswith(prefix):
                            changed(name)
        finally:
            for _, pubsub, _, _ in subscriptions:
                pubsub.close()


def _config_value(name: str, value: str) -> str:
    """A configuration value in one canonical form: bytes for memory sizes, sorted flag sets, single spaces."""
    text = " ".join(str(value).split())
    if name in FLAG_SETS:
        shorthand, expands = FLAG_SETS[name]
        flags = set(text.replace(shorthand, expands))
        return "".join(sorted(flags))
    if (match := MEMORY.match(text)) is not None:
        return str(int(match.group(1)) * UNITS[match.group(2).lower()])
    lowered = text.lower()
    if lowered in TRUE - {"1"}:
        return "yes"
    if lowered in FALSE - {"0"}:
        return "no"
    return text


def _escape(prefix: str) -> str:
    """A key prefix as a literal in a Redis glob pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix)


def _glob(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
