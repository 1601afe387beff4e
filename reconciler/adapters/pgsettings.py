"""The PostgreSQL settings adapter: a server's configuration (`pg_settings`), written with ALTER SYSTEM.

source options:
  host: 127.0.0.1     port: 5432     dbname: postgres     user: reconciler
  password: pg-prod                 # a credential name (RECONCILER_ADAPTERS__CREDENTIALS)
  sslmode: prefer                   # passed to libpq
  include: ["log_*"]                # settings compared besides those in `desired` (globs); default none

Only the settings named in `desired` (and `include`) are read, so the other few hundred are not reported as
unmanaged. Values compare in the server's own terms: PostgreSQL's base unit of each setting (shared_buffers
in 8kB pages, statement_timeout in ms), so `128MB` and `16384` are the same shared_buffers, and booleans as
on/off. A write is staged with ALTER SYSTEM (the server validates the value and writes
postgresql.auto.conf), committed with pg_reload_conf() and verified from a new session. A setting that only
takes effect after a restart (context postmaster) is never written: its drift is escalated as such.
The user needs to be a superuser (or hold ALTER SYSTEM privileges on the settings) to write.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from reconciler.adapters.common import Credentials, Options
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.domain.paths import MISSING
from reconciler.errors import AccessDenied, ApplyError, ConflictError, DiscoveryError
from reconciler.ports import Capabilities, Change, ChangeResult, Staged
from reconciler.settings import Settings

OPTIONS = ("host", "port", "dbname", "user", "password", "sslmode", "include")
MEMORY = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
TIME = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
TRUE = {"on", "true", "yes", "1", "t", "y"}
FALSE = {"off", "false", "no", "0", "f", "n"}
QUANTITY = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
RESTART = {"postmaster": "needs a server restart (context postmaster)", "internal": "is read-only (internal)"}


@dataclass(frozen=True)
class _Meta:
    unit: str | None
    vartype: str


@dataclass
class _Pending:
    conninfo: dict[str, Any]
    where: str
    written: dict[str, str | None]  # setting -> value written to postgresql.auto.conf (None: reset)
    previous: dict[str, str | None]  # setting -> what postgresql.auto.conf held before (None: nothing)


class PostgresSettingsAdapter:
    known_options = OPTIONS
    capabilities = Capabilities(read=True, write=True, stage=True, compare_and_swap=True, strings_only=True)

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._credentials = Credentials(settings)
        self._meta: dict[str, dict[str, _Meta]] = {}  # server location -> setting -> unit and type

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresSettingsAdapter:
        return cls(settings)

    # -- connections ------------------------------------------------------------------------------------

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; nothing is contacted."""
        self._conninfo(target)

    def _conninfo(self, target: Target) -> tuple[dict[str, Any], str, list[str]]:
        options = Options.of(target, "postgres", OPTIONS)
        info: dict[str, Any] = {
            "host": options.text("host", "127.0.0.1"),
            "port": options.integer("port", 5432),
            "dbname": options.text("dbname", "postgres"),
            "user": options.text("user", "postgres"),
            "connect_timeout": max(1, math.ceil(self._timeout)),
            "application_name": "reconciler",
            "options": f"-c statement_timeout={int(self._timeout * 1000)}",
        }
        if "sslmode" in options.values:
            info["sslmode"] = options.text("sslmode")
        password = self._credentials.get(options, "password")
        if password is not None:
            info["password"] = password
        where = f"postgresql://{info['user']}@{info['host']}:{info['port']}/{info['dbname']}"
        return info, where, options.strings("include")

    def _connect(self, info: dict[str, Any], where: str, error: type[Exception]) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(**info, autocommit=True)
        except psycopg.OperationalError as exc:
            message = self._credentials.scrub(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))
            if "password authentication failed" in message or "no password supplied" in message:
                raise AccessDenied(f"{where}: the server refused the credentials: {message}") from None
            raise error(f"{where}: cannot connect: {message}") from None

    # -- ports ------------------------------------------------------------------------------------------

    def discover(self, target: Target) -> Observed:
        info, where, include = self._conninfo(target)
        with self._connect(info, where, DiscoveryError) as conn:
            rows = conn.execute("SELECT name, setting, unit, vartype, context FROM pg_settings").fetchall()
        self._meta[where] = {name: _Meta(unit, vartype) for name, _, unit, vartype, _ in rows}
        wanted = set(target.spec.desired)
        unknown = sorted(wanted - set(self._meta[where]))
        if unknown:
            raise target.problem(f"spec.desired.{unknown[0]}", f"{where} has no setting named {unknown[0]!r}")
        document: dict[str, Any] = {}
        unwritable: dict[str, str] = {}
        for name, setting, _, _, context in rows:
            if name in wanted or any(fnmatch.fnmatchcase(name, g) for g in include):
                document[name] = setting
                if context in RESTART:
                    unwritable["/" + name] = RESTART[context]
        data = json.dumps(document, sort_keys=True).encode()
        return Observed(fingerprint.of_bytes(data), where, document=document, unwritable=unwritable)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        _, where, _ = self._conninfo(target)
        meta = self._meta.get(where, {})
        out: dict[str, Any] = {}
        for name, value in desired.items():
            if isinstance(value, (dict, list)) or value is None:
                raise target.problem(f"spec.desired.{name}", "a PostgreSQL setting holds a single value")
            found = meta.get(name)
            try:
                out[name] = _canonical(value, found) if found else _plain(value)
            except ValueError as exc:
                raise target.problem(f"spec.desired.{name}", str(exc)) from None
        return out

    def stage(self, target: Target, changes: Sequence[Change], *, dry_run: bool) -> Staged:
        info, where, _ = self._conninfo(target)
        results: list[ChangeResult] = []
        messages: list[str] = []
        written: dict[str, str | None] = {}
        with self._connect(info, where, ApplyError) as conn:
            live = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())
            context = dict(conn.execute("SELECT name, context FROM pg_settings").fetchall())
            previous = _auto_conf(conn)
            for change in changes:
                if len(change.path) != 1 or change.path[0] not in live:
                    raise ApplyError(f"{where}: no setting at {'/'.join(change.path)}")
                name = change.path[0]
                now = live[name]
                if change.after is not MISSING and now == change.after:
                    results.append(ChangeResult.NOOP)
                    messages.append("live already holds the new value")
                elif change.before is not MISSING and now != change.before:
                    results.append(ChangeResult.CONFLICT)
                    messages.append("live holds neither the expected value nor the new one")
                elif context[name] in RESTART:
                    raise ApplyError(f"{where}: {name} {RESTART[context[name]]}; it is never written live")
                else:
                    results.append(ChangeResult.WRITE)
                    messages.append("dry run: would write" if dry_run else "staged with ALTER SYSTEM")
                    written[name] = None if change.after is MISSING else str(change.after)
            pending = _Pending(info, where, written, {n: previous.get(n) for n in written})
            if not dry_run:
                try:
                    _alter(conn, written)
                except psycopg.Error as exc:
                    _alter(conn, pending.previous)
                    raise ApplyError(f"{where}: the server refused the change: {_message(exc)}") from None
        return Staged(target.name, results, messages, dry_run, pending)

    def commit(self, staged: Staged) -> None:
        pending: _Pending = staged.handle
        if staged.dry_run or not pending.written:
            return
        with self._connect(pending.conninfo, pending.where, ApplyError) as conn:
            now = _auto_conf(conn)
            moved = [n for n, v in pending.written.items() if now.get(n) != v]
            if moved:
                raise ConflictError(f"{pending.where}: {moved[0]} was changed by another writer while staged")
            conn.execute("SELECT pg_reload_conf()")
        # Verify from new sessions: the reload is a signal, and new backends see it once the postmaster has it.
        deadline = time.monotonic() + self._timeout
        while True:
            with self._connect(pending.conninfo, pending.where, ApplyError) as conn:
                errors = conn.execute(
                    "SELECT name, error FROM pg_file_settings WHERE error IS NOT NULL AND name = ANY(%s)",
                    (list(pending.written),),
                ).fetchall()
                if errors:
                    raise ApplyError(f"{pending.where}: reload refused {errors[0][0]}: {errors[0][1]}")
                live = dict(
                    conn.execute(
                        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(pending.written),)
                    ).fetchall()
                )
            if all(v is None or live.get(n) == v for n, v in pending.written.items()):
                return
            if time.monotonic() > deadline:
                raise ApplyError(f"{pending.where}: the reloaded configuration did not take effect in time")
            time.sleep(0.05)

    def discard(self, staged: Staged) -> None:
        pending: _Pending | None = staged.handle
        if pending is None or staged.dry_run or not pending.written:
            return
        with self._connect(pending.conninfo, pending.where, ApplyError) as conn:
            _alter(conn, pending.previous)


def _auto_conf(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """What postgresql.auto.conf (ALTER SYSTEM's file) sets, by name."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%%postgresql.auto.conf' ORDER BY seqno"
    ).fetchall()
    return {name: setting for name, setting in rows}


def _alter(conn: psycopg.Connection[Any], values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        else:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or exc).strip()


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _canonical(value: Any, meta: _Meta) -> str:
    """A desired value in the server's terms: base units for numbers, on/off for booleans."""
    if meta.vartype == "bool":
        text = _plain(value).strip().lower()
        if text in TRUE:
            return "on"
        if text in FALSE:
            return "off"
        raise ValueError(f"{value!r} is not a boolean (on/off)")
    if meta.vartype in ("integer", "real"):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        match = QUANTITY.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a number with an optional unit")
        number, unit = float(match.group(1)), match.group(2)
        if unit:
            number = _to_base(number, unit, meta.unit)
        if meta.vartype == "integer":
            return str(round(number))
        return str(int(number)) if number.is_integer() else repr(number)
    if meta.vartype == "enum":
        return _plain(value).lower()
    return _plain(value)


def _to_base(number: float, unit: str, base: str | None) -> float:
    """`number` `unit` in the setting's base unit (`8kB`, `ms`, ...); units are case-sensitive, as in PostgreSQL."""
    if not base:
        raise ValueError(f"this setting takes no unit, but {unit!r} was given")
    match = re.match(r"^(\d*)(\w+)$", base)
    assert match is not None, base
    scale, base_unit = int(match.group(1) or 1), match.group(2)
    table = MEMORY if base_unit in MEMORY else TIME
    if unit not in table:
        raise ValueError(f"unit {unit!r} is not one of {', '.join(table)}")
    return number * table[unit] / (table[base_unit] * scale)
