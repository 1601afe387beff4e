"""Secret references in desired values, resolved at pass time and never persisted.

A string that is exactly `${env:NAME}` or `${file:/path}` is replaced by the variable's value or the file's
content (one trailing newline dropped). Every path that held a reference is compared as a secret: only a
keyed hash of it reaches history, logs, metrics and output. `$${...}` stands for a literal `${...}`.
Files must lie inside the configured secret roots (RECONCILER_SECRETS__FILE_ROOTS).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.desired import files
from reconciler.domain.manifest import Target
from reconciler.domain.paths import KeyPath
from reconciler.errors import ConfigurationError

MAX_SECRET_BYTES = 1024 * 1024  # a password, a token or a certificate; not /dev/zero
REF = re.compile(r"^\$\{(env|file):([^}]+)\}$")
ESCAPED = re.compile(r"^\$(\$\{[^}]*\})$")


def resolve(
    target: Target, desired: dict[str, Any], *, file_roots: Sequence[Path], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[KeyPath]]:
    """`desired` with every reference resolved, and the paths that held one."""
    env = os.environ if environ is None else environ
    roots = [Path(os.path.realpath(r)) for r in file_roots]
    paths: list[KeyPath] = []

    def fail(path: KeyPath, message: str) -> ConfigurationError:
        return target.problem("spec.desired." + ".".join(path), message)

    def one(path: KeyPath, value: str) -> str:
        if (escaped := ESCAPED.match(value)) is not None:
            return escaped.group(1)
        match = REF.match(value)
        if match is None:
            return value
        paths.append(path)
        kind, name = match.groups()
        if kind == "env":
            if name not in env:
                raise fail(path, f"environment variable {name} is not set")
            return env[name]
        real = Path(os.path.realpath(name))
        if not any(real == r or real.is_relative_to(r) for r in roots):
            where = ", ".join(str(r) for r in roots) or "none configured (set RECONCILER_SECRETS__FILE_ROOTS)"
            raise fail(path, f"secret file {name} is outside the secret roots: {where}")
        try:
            text = files.read_regular(real, MAX_SECRET_BYTES)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _reason(exc)
            raise fail(path, f"secret file {name} cannot be read: {reason}") from None
        return text[:-1] if text.endswith("\n") else text

    def walk(path: KeyPath, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk((*path, k), v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk((*path, str(i)), v) for i, v in enumerate(node)]
        if isinstance(node, str) and node.startswith("$"):
            return one(path, node)
        return node

    return walk((), desired), paths


def _reason(exc: Exception) -> str:
    # A decoding error's message quotes the bytes it met: in a secret file, those may be the secret.
    return "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
