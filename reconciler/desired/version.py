"""The version of a desired state: SHA-256 of the canonical JSON of all documents, plus the git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.values import canonical_json, sha256_hex

GIT_TIMEOUT_S = 5.0


def version_of(root: Path, documents: list[Any]) -> DesiredVersion:
    commit, dirty = git_commit(root)
    return DesiredVersion(digest=sha256_hex(canonical_json(documents)), git_commit=commit, git_dirty=dirty)


def git_commit(root: Path) -> tuple[str | None, bool]:
    """The HEAD commit of the work tree holding `root`, and whether `root` has uncommitted edits."""
    folder = root if root.is_dir() else root.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return head.stdout.strip() or None, bool(status.stdout.strip())
