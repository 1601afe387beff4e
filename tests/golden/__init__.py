"""Golden outputs: what `reconciler diff` and `reconciler compare --baseline` print, byte for byte.

A test renders an output and calls check(name, text). After a deliberate change of an output, rewrite the
files with `UPDATE_GOLDEN=1 pytest tests/cli` and review the diff in git."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def check(name: str, text: str) -> None:
    """Assert that `text` equals the golden file `name`; with UPDATE_GOLDEN=1, write it instead."""
    path = HERE / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    want = path.read_text() if path.exists() else ""
    if text != want:
        delta = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), f"golden/{name}", "output"))
        raise AssertionError(f"output differs from tests/golden/{name}:\n{delta}")
