from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.desired.loader import load
from reconciler.desired.refs import resolve
from reconciler.errors import ConfigurationError


def target(tmp_path: Path, desired: str):  # type: ignore[no-untyped-def]
    (tmp_path / "t.yaml").write_text(
        f"kind: Target\nmetadata: {{name: t}}\nspec:\n  source: {{adapter: file, path: x.yaml}}\n  desired: {desired}\n"
    )
    return load(tmp_path).targets["t"]


def test_references_resolve_from_env_and_files(tmp_path: Path) -> None:
    """${env:NAME} and ${file:/path} resolve at pass time; $${...} is a literal; paths with refs are listed."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "db").write_text("s3cret-from-file\n")
    t = target(
        tmp_path, f"{{db: {{password: '${{file:{secrets}/db}}', user: '${{env:DB_USER}}'}}, lit: '$${{env:X}}'}}"
    )
    assert t.has_references
    desired, paths = resolve(t, t.spec.desired, file_roots=[secrets], environ={"DB_USER": "app"})
    assert desired == {"db": {"password": "s3cret-from-file", "user": "app"}, "lit": "${env:X}"}
    assert sorted(paths) == [("db", "password"), ("db", "user")]
    assert t.spec.desired["db"]["password"].startswith("${file:")  # the manifest keeps the reference


@pytest.mark.parametrize(
    ("desired", "message"),
    [
        ("{p: '${env:NOPE}'}", "t.yaml: document 1 (t): spec.desired.p: environment variable NOPE is not set"),
        ("{p: '${file:/etc/hostname}'}", "spec.desired.p: secret file /etc/hostname is outside the secret roots: none"),
    ],
)
def test_unresolvable_references_name_the_field(tmp_path: Path, desired: str, message: str) -> None:
    """A missing variable or a file outside the roots is a clear error for that target, with no value in it."""
    t = target(tmp_path, desired)
    with pytest.raises(ConfigurationError) as info:
        resolve(t, t.spec.desired, file_roots=[], environ={})
    assert message in str(info.value.problems[0])


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("kind", "message"), [("fifo", "not a regular file"), ("big", "larger than 1048576 bytes")])
def test_secret_files_are_read_bounded(tmp_path: Path, kind: str, message: str) -> None:
    """A secret reference to a FIFO (which would block the pass) or a huge file (or /dev/zero) is refused."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    if kind == "fifo":
        os.mkfifo(secrets / "s")
    else:
        with (secrets / "s").open("wb") as handle:
            handle.truncate(8 * 1024 * 1024)
    t = target(tmp_path, f"{{p: '${{file:{secrets}/s}}'}}")
    with pytest.raises(ConfigurationError) as info:
        resolve(t, t.spec.desired, file_roots=[secrets], environ={})
    assert f"spec.desired.p: secret file {secrets}/s cannot be read: {message}" in str(info.value.problems[0])
