"""The environment adapter: a running process's environment variables, read from /proc. Read-only.

A process's environment is fixed when it starts, so drift there cannot be fixed in place: it is always
escalated (the fix is a restart with the right environment, which is the deployment's job). `.env` files
are read and written by the file adapter (`format: env`).

source options:
  pid: 1234                    # one process, or
  command: "gunicorn .*app"    # a regular expression searched in each process's command line
  pick: oldest | newest        # which one when several processes match (default oldest: the parent)
  include: ["DB_*", "LOG_*"]   # only these variables (globs); default all
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

from reconciler.adapters.common import Options, flat_strings
from reconciler.domain import fingerprint
from reconciler.domain.manifest import Target
from reconciler.domain.observed import Observed
from reconciler.errors import DiscoveryError
from reconciler.ports import Capabilities
from reconciler.settings import Settings

OPTIONS = ("pid", "command", "pick", "include")


class ProcessEnvAdapter:
    """Reads `/proc/PID/environ` of a process chosen by PID or by a command-line pattern."""

    capabilities = Capabilities(read=True, write=False, strings_only=True, local=True)
    known_options = OPTIONS

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessEnvAdapter:
        return cls()

    def _options(self, target: Target) -> tuple[Options, list[str]]:
        options = Options.of(target, "env", OPTIONS)
        if ("pid" in options.values) == ("command" in options.values):
            raise options.problem("pid", "give exactly one of pid and command")
        return options, options.strings("include")

    def _wanted(self, target: Target) -> int | tuple[re.Pattern[str], str]:
        """The pid, or the command's regular expression and which of its processes to pick."""
        options, _ = self._options(target)
        if "pid" in options.values:
            pid: int = options.integer("pid")
            return pid
        pattern = options.text("command")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise options.problem("command", f"is not a regular expression: {exc}") from None
        return regex, options.text("pick", "oldest", choices=("oldest", "newest"))

    def check(self, target: Target) -> None:
        """The target's options, checked as a read checks them; no process is looked at."""
        self._wanted(target)

    def locate(self, target: Target) -> int:
        """The PID whose environment the target describes."""
        wanted = self._wanted(target)
        if isinstance(wanted, int):
            if not (self._proc / str(wanted)).is_dir():
                raise DiscoveryError(f"process {wanted} does not exist")
            return wanted
        regex, pick = wanted
        found: list[tuple[int, int]] = []  # (start ticks, pid)
        me = os.getpid()
        for entry in self._proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
                if not cmdline or not regex.search(cmdline):
                    continue
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone, or a kernel thread
            # Field 22 (start time) follows the command name in parentheses, which may itself hold spaces.
            start = int(stat[stat.rindex(")") + 2 :].split()[19])
            found.append((start, int(entry.name)))
        if not found:
            raise DiscoveryError(f"no running process's command line matches {regex.pattern!r}")
        found.sort()
        return found[0][1] if pick == "oldest" else found[-1][1]

    def discover(self, target: Target) -> Observed:
        _, include = self._options(target)
        pid = self.locate(target)
        path = self._proc / str(pid) / "environ"
        try:
            raw = path.read_bytes()
        except PermissionError:
            raise DiscoveryError(
                f"{path}: permission denied (the daemon must run as the process's user or root)"
            ) from None
        except FileNotFoundError:
            raise DiscoveryError(f"process {pid} exited while it was read") from None
        except OSError as exc:
            raise DiscoveryError(f"{path}: cannot be read: {exc.strerror}") from None
        env: dict[str, Any] = {}
        for entry in raw.split(b"\0"):
            name, sep, value = entry.partition(b"=")
            if not sep or not name:
                continue
            key = name.decode("utf-8", "replace")
            if include and not any(fnmatch.fnmatchcase(key, g) for g in include):
                continue
            env[key] = value.decode("utf-8", "replace")
        data = "\0".join(f"{k}={v}" for k, v in sorted(env.items())).encode()
        return Observed(fingerprint.of_bytes(data), f"pid {pid} environment", document=env)

    def normalize(self, target: Target, desired: dict[str, Any]) -> dict[str, Any]:
        return flat_strings(target, desired, "a process environment")
