"""The git side of adoptions: authors, branch names, pull-request links, and git's errors without passwords."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.desired import gitsync


def test_authors_branch_names_and_links() -> None:
    """`Name <email>` is kept; a plain login gets the configured domain; branch names are safe for git and
    URLs; the pull-request template gets the branch, and no template gives no link."""
    assert gitsync.Author.of("Dana Ops <dana@example.com>", "corp") == gitsync.Author("Dana Ops", "dana@example.com")
    assert gitsync.Author.of("dana", "corp.example") == gitsync.Author("dana", "dana@corp.example")
    assert (
        gitsync.branch_name("payments api/prod", "database/timeout", "42")
        == "adopt/payments-api-prod-database-timeout-42"
    )
    assert (
        gitsync.pull_request_url("https://g/compare/main...{branch}", "adopt/x-1")
        == "https://g/compare/main...adopt/x-1"
    )
    assert gitsync.pull_request_url(None, "adopt/x") is None


def test_git_errors_name_the_command_and_hide_passwords(tmp_path: Path) -> None:
    """A push that fails says which command failed and why, with the remote's password redacted; a folder
    outside git is refused with what --commit needs."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    with pytest.raises(gitsync.GitError, match="not in a git work tree; --commit needs"):
        gitsync.repository(tmp_path)
    (repo / "a.yaml").write_text("a: 1\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "x"], check=True, env={"PATH": "/usr/bin:/bin", **env})
    author = gitsync.Author("t", "t@e")
    remote = "http://user:hunter2@127.0.0.1:9/desired.git"
    with pytest.raises(gitsync.GitError) as caught:
        gitsync.propose(repo, {repo / "a.yaml": "a: 2\n"}, branch="adopt/x", author=author, message="m", remote=remote)
    assert "git ls-remote failed" in str(caught.value) and "hunter2" not in str(caught.value)
    sha = gitsync.propose(repo, {repo / "a.yaml": "a: 2\n"}, branch="adopt/x", author=author, message="m", remote=None)
    shown = subprocess.run(
        ["git", "-C", str(repo), "show", f"{sha}:a.yaml"], capture_output=True, text=True, check=True
    )
    assert shown.stdout == "a: 2\n" and (repo / "a.yaml").read_text() == "a: 1\n"
