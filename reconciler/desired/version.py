"""The version of a desired state: SHA-256 of the canonical JSON of all documents, plus the git commit."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.values import canonical_json

GIT_TIMEOUT_S = 5.0


class Digest:
    """SHA-256 of the canonical JSON of a list of documents, fed one document at a time: the digest of
    canonical_json(documents), without a loader holding every document (and the whole text) at once."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"[")
        self._first = True

    def add(self, document: Any) -> None:
        self._hash.update(
            canonical_json(document).encode() if self._first else b"," + canonical_json(document).encode()
        )
        self._first = False

    def hexdigest(self) -> str:
        done = self._hash.copy()
        done.update(b"]")
        return done.hexdigest()


def version_of(root: Path, documents: list[Any] | Digest) -> DesiredVersion:
    """The version of `documents` (or of those fed to a Digest) below `root`."""
    if not isinstance(documents, Digest):
        digest = Digest()
        for document in documents:
            digest.add(document)
        documents = digest
    commit, dirty = git_commit(root)
    return DesiredVersion(digest=documents.hexdigest(), git_commit=commit, git_dirty=dirty)


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
