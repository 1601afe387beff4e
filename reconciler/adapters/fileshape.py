"""What the file adapter writes: the live text edited in place (see shape.py), or, for a write that undoes
reconciler's last one, the bytes the file held before it.

The undo log keeps, per live file, the lines reconciler's last write replaced and a hash of what it wrote.
When the file still holds exactly what was written and the document to write is the one it held before,
the original bytes go back, whatever the editors would have made of it (a deleted key returns to its place,
a `0x1E` stays hex). Records are kept only for writes that touch no secret path of the target, in memory
and, when RECONCILER_FILE__UNDO_DIR is set, as files (mode 0600) that another process (the CLI's rollback)
finds.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reconciler.adapters import formats, lineedit, shape, yamledit
from reconciler.domain.manifest import Target
from reconciler.domain.paths import MISSING, KeyPath, any_match
from reconciler.domain.values import strict_equal
from reconciler.ports import Change

EDITORS: dict[str, Callable[[str, dict[str, Any], dict[str, Any]], str]] = {
    "yaml": yamledit.edit_yaml,
    "json": shape.edit_json,
    "toml": shape.edit_toml,
    "env": lineedit.edit_env,
    "ini": lineedit.edit_ini,
}

_MAX_PATCH_LINES = 10_000  # a write that replaced more lines than this keeps no undo record


def rewrite(fmt: formats.Format, text: str, current: dict[str, Any], updated: dict[str, Any]) -> str | None:
    """`text` edited to hold `updated` in the shape it has, read back to check; None when the format's editor
    cannot (the caller renders the whole file instead)."""
    editor = EDITORS.get(fmt.name)
    if editor is None:
        return None
    try:
        edited = editor(text, current, updated)
        return edited if strict_equal(fmt.parse(edited), updated) else None
    except (shape.Unshaped, formats.FormatError, KeyError, IndexError, ValueError, TypeError, RecursionError):
        return None


def touches_secret(target: Target, changes: Sequence[Change]) -> bool:
    """Whether a change sets, deletes or holds below its path anything the target declares secret."""
    globs = target.spec.secrets
    if not globs:
        return False
    return any(any_match(globs, leaf) for c in changes for v in (c.before, c.after) for leaf in _leaves(v, c.path))


def _leaves(value: Any, path: KeyPath) -> list[KeyPath]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list) and value:
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, str(i)))]
    return [path] if value is not MISSING or path else []


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class UndoLog:
    """The lines each live file held before reconciler's last write to it (see the module's docstring)."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def remember(self, path: Path, before: bytes, after: bytes, *, keep: bool) -> None:
        """Record that reconciler replaced `before` by `after` at `path` (forget any older record when not
        `keep`: the write touched a secret, or the change was too large to keep as lines)."""
        old = before.decode("utf-8").splitlines(keepends=True)
        new = after.decode("utf-8").splitlines(keepends=True)
        matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
        patch: list[tuple[int, int, list[str]]] = [
            (j1, j2, old[i1:i2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
        ]
        record = {"written": _digest(after), "original": _digest(before), "patch": patch}
        if sum(len(lines) for _, _, lines in patch) > _MAX_PATCH_LINES:
            keep = False
        with self._lock:
            self._records.pop(str(path), None)
            if keep:
                self._records[str(path)] = record
        self._store(path, record if keep else None)

    def restore(self, path: Path, now: bytes) -> bytes | None:
        """What `path` held before reconciler's last write, when it still holds exactly what that wrote."""
        with self._lock:
            record = self._records.get(str(path))
        if record is None:
            record = self._load(path)
        if record is None or record.get("written") != _digest(now):
            return None
        lines = now.decode("utf-8").splitlines(keepends=True)
        out: list[str] = []
        at = 0
        for start, end, original in record["patch"]:
            out.extend(lines[at:start])
            out.extend(original)
            at = end
        out.extend(lines[at:])
        restored = "".join(out).encode("utf-8")
        return restored if _digest(restored) == record.get("original") else None

    def _file(self, path: Path) -> Path | None:
        if self._directory is None:
            return None
        return self._directory / f"{_digest(str(path).encode('utf-8'))}.json"

    def _store(self, path: Path, record: dict[str, Any] | None) -> None:
        where = self._file(path)
        if where is None:
            return
        if record is None:
            with contextlib.suppress(FileNotFoundError):
                where.unlink()
            return
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=where.parent, prefix=".undo.")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({**record, "path": str(path)}, handle)
            os.replace(name, where)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    def _load(self, path: Path) -> dict[str, Any] | None:
        where = self._file(path)
        if where is None:
            return None
        try:
            record = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("path") == str(path) else None
