"""The version of a desired state: a SHA-256 over each file's path and the digest of its documents' canonical
JSON, plus the git commit.

Per file, so that a reload encodes only the files that changed. It was one digest of every document's
canonical JSON in file order before (issue 17): the same folder got another digest, once, with that change.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconciler.domain.manifest import DesiredVersion
from reconciler.domain.values import canonical_json, sha256_hex

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


def of_files(files: Iterable[tuple[str, str]]) -> str:
    """The digest of a folder from its files' (path relative to the folder, digest of its documents): the same
    whatever order they are given in; another when a file is added, removed or renamed, or a document changes."""
    return sha256_hex(canonical_json(sorted([path, digest] for path, digest in files)))


def version_of(root: Path, files: Iterable[tuple[str, str]]) -> DesiredVersion:
    """The version of the folder `root` whose files are `files`: (relative path, digest of its documents)."""
    commit, dirty = git_commit(root)
    return DesiredVersion(digest=of_files(files), git_commit=commit, git_dirty=dirty)


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
