"""Manifest changes as git commits on a new branch, pushed for review, with the `git` command.

The commit is built with git's plumbing against a private index: the blob, the tree and the commit are
made from HEAD and the new texts, and the branch is created to point at it. The working tree, the index and
the checked-out branch of the desired-state folder are never touched, so a running daemon keeps reading
what is merged, not what is proposed. A push never forces: a branch that exists (here or on the remote) is
refused, so the same proposal is never made twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from reconciler.errors import ConfigurationError

GIT_TIMEOUT_S = 120.0  # a push over a slow link; a hung remote fails the command rather than holding it
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):[^@/\s]*@")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class GitError(ConfigurationError):
    """A git command failed; the message names the command and git's own last line (passwords removed)."""


@dataclass(frozen=True)
class Author:
    name: str
    email: str

    @classmethod
    def of(cls, actor: str, email_domain: str) -> Author:
        """`Name <email>` as given, else the actor at `email_domain`."""
        found = re.fullmatch(r"\s*(.*?)\s*<([^<>\s]+@[^<>\s]+)>\s*", actor)
        if found and found.group(1):
            return cls(found.group(1), found.group(2))
        name = actor.strip() or "reconciler"
        return cls(name, f"{_UNSAFE.sub('-', name).strip('-.') or 'reconciler'}@{email_domain}")


@dataclass(frozen=True)
class Proposal:
    """A commit on a new branch, where it was pushed, and the link to open its pull request."""

    branch: str
    commit: str
    remote: str | None = None
    pull_request_url: str | None = None


def branch_name(*parts: str) -> str:
    """A branch name made of `parts` (`adopt/payments-api-prod-42`), safe for git and URLs."""
    cleaned = [_UNSAFE.sub("-", part).strip("-./") for part in parts]
    return "adopt/" + "-".join(p for p in cleaned if p)


def pull_request_url(template: str | None, branch: str) -> str | None:
    """`template` with `{branch}` replaced (`https://git.example/org/desired/compare/main...{branch}`)."""
    if not template:
        return None
    return template.replace("{branch}", quote(branch, safe="/"))


def _git(repo: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    command = ["git", "-C", str(repo), *args]
    try:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            encoding="utf-8",  # manifests are UTF-8 whatever the locale says
            errors="replace",
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (the `git` command was not found)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {GIT_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = _URL_PASSWORD.sub(r"\1:<redacted>@", lines[-1]) if lines else f"exit status {done.returncode}"
        raise GitError(f"git {args[0]} failed in {repo}: {last}")
    return done.stdout.strip()


def repository(folder: Path) -> Path:
    """The top of the git work tree that holds `folder`."""
    try:
        return Path(_git(folder, "rev-parse", "--show-toplevel"))
    except GitError:
        raise GitError(f"{folder} is not in a git work tree; --commit needs the desired state under git") from None


def branch_exists(repo: Path, branch: str, remote: str | None) -> bool:
    """Whether `branch` exists here or, when `remote` is given, on the remote."""
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        return True
    except GitError:
        pass
    return bool(remote and _git(repo, "ls-remote", "--heads", remote, f"refs/heads/{branch}"))


def propose(
    repo: Path, files: dict[Path, str], *, branch: str, author: Author, message: str, remote: str | None
) -> str:
    """Commit the new texts of `files` on top of HEAD as new branch `branch` (pushed to `remote` when given);
    returns the commit. Refused when a file differs from HEAD in the work tree (commit or stash it first),
    or when the branch exists."""
    _git(repo, "check-ref-format", "--branch", branch)
    if branch_exists(repo, branch, remote):
        raise GitError(f"branch {branch} exists already; name another with --branch")
    head = _git(repo, "rev-parse", "--verify", "HEAD^{commit}")
    paths = {file: file.resolve().relative_to(repo.resolve()).as_posix() for file in files}
    dirty = _git(repo, "status", "--porcelain", "--", *paths.values())
    if dirty:
        raise GitError(f"{', '.join(paths.values())}: uncommitted changes in {repo}; commit or stash them first")
    identity = {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name,
        "GIT_COMMITTER_EMAIL": author.email,
    }
    with tempfile.TemporaryDirectory(prefix="reconciler-git-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo, "read-tree", head, env=index)
        for file, text in files.items():
            blob = _git(repo, "hash-object", "-w", "--stdin", stdin=text)
            mode = _git(repo, "ls-files", "--stage", "--", paths[file], env=index).split(" ", 1)[0] or "100644"
            _git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{paths[file]}", env=index)
        tree = _git(repo, "write-tree", env=index)
    commit = _git(repo, "commit-tree", tree, "-p", head, "-F", "-", stdin=message, env=identity)
    _git(repo, "update-ref", f"refs/heads/{branch}", commit, "")  # "": only if the branch does not exist
    if remote:
        _git(repo, "push", "--porcelain", remote, f"refs/heads/{branch}:refs/heads/{branch}")
    return commit
