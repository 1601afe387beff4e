from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.procenv import ProcessEnvAdapter
from reconciler.errors import ConfigurationError, DiscoveryError
from tests.adapters.helpers import target


@pytest.fixture
def process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A sleeping process with a marker on its command line and DB_TIMEOUT=60s in its environment."""
    marker = f"reconciler-test-{uuid.uuid4().hex}"
    env = {"PATH": os.environ.get("PATH", ""), "DB_TIMEOUT": "60s", "LOG_LEVEL": "DEBUG", "OTHER": "x"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker], env=env)
    yield child, marker
    child.kill()
    child.wait()


def test_reads_a_process_environment_by_pid(tmp_path: Path, process: tuple[subprocess.Popen[bytes], str]) -> None:
    child, _ = process
    t = target(tmp_path, {"adapter": "env", "pid": child.pid, "include": ["DB_*", "LOG_*"]})
    observed = ProcessEnvAdapter().discover(t)
    assert observed.document == {"DB_TIMEOUT": "60s", "LOG_LEVEL": "DEBUG"}
    assert observed.location == f"pid {child.pid} environment"
    assert ProcessEnvAdapter.capabilities.write is False


def test_finds_the_process_by_command_pattern(tmp_path: Path, process: tuple[subprocess.Popen[bytes], str]) -> None:
    _, marker = process
    t = target(tmp_path, {"adapter": "env", "command": marker})
    observed = ProcessEnvAdapter().discover(t)
    assert observed.document["DB_TIMEOUT"] == "60s"
    assert observed.document["OTHER"] == "x"
    same = ProcessEnvAdapter().discover(t)
    assert same.fingerprint == observed.fingerprint


def test_desired_values_become_strings_and_nesting_is_refused(tmp_path: Path) -> None:
    t = target(tmp_path, {"adapter": "env", "pid": 1}, {"POOL": 10, "DEBUG": False})
    assert ProcessEnvAdapter().normalize(t, t.spec.desired) == {"POOL": "10", "DEBUG": "false"}
    nested = target(tmp_path, {"adapter": "env", "pid": 1}, {"DB": {"HOST": "x"}})
    with pytest.raises(ConfigurationError, match=r"spec\.desired\.DB: a process environment holds only plain"):
        ProcessEnvAdapter().normalize(nested, nested.spec.desired)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"adapter": "env"}, r"spec\.source\.pid: give exactly one of pid and command"),
        ({"adapter": "env", "pid": 1, "command": "x"}, "give exactly one of pid and command"),
        ({"adapter": "env", "pid": "one"}, r"spec\.source\.pid: must be a non-negative integer"),
        ({"adapter": "env", "command": "(["}, r"spec\.source\.command: is not a regular expression"),
        ({"adapter": "env", "pid": 1, "user": "x"}, r"spec\.source\.user: unknown option of the env adapter"),
        ({"adapter": "env", "command": "x", "pick": "any"}, r"spec\.source\.pick: 'any' is not one of oldest"),
    ],
)
def test_bad_options_name_the_field(tmp_path: Path, source: dict[str, object], message: str) -> None:
    t = target(tmp_path, source)
    with pytest.raises(ConfigurationError, match=message) as caught:
        ProcessEnvAdapter().discover(t)
    assert caught.value.problems[0].file.endswith("t.yaml")


def test_no_such_process(tmp_path: Path) -> None:
    gone = target(tmp_path, {"adapter": "env", "command": f"no-such-command-{uuid.uuid4().hex}"})
    with pytest.raises(DiscoveryError, match="no running process's command line matches"):
        ProcessEnvAdapter().discover(gone)
    missing = target(tmp_path, {"adapter": "env", "pid": 999_999_999})
    with pytest.raises(DiscoveryError, match="process 999999999 does not exist"):
        ProcessEnvAdapter().discover(missing)
