"""A large load's YAML parsed by worker processes (desired/parallel.py) gives what a parse in process gives:
the same state and version, the same problems for hostile or broken files; a file that changes after the
workers parsed it is parsed again; workers that cannot start leave the load to this process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired import parallel
from reconciler.desired.files import FileCache
from reconciler.desired.loader import load
from reconciler.errors import ConfigurationError
from tests.test_yamlload import alias_bomb

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="worker processes need two cores or more")


def manifest(i: int) -> str:
    return (
        f"kind: Target\nmetadata: {{name: t{i}, environment: prod, app: a{i % 3}}}\nspec:\n"
        f"  source: {{adapter: file, path: t{i}.yaml}}\n  desired: {{when: 2026-01-0{1 + i % 9}, n: {i}, s: v{i}}}\n"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for f in range(12):
        (tmp_path / f"m{f:02}.yaml").write_text("---\n".join(manifest(f * 10 + i) for i in range(10)))
    return tmp_path


def in_workers() -> FileCache:
    return FileCache(parallel_min_chars=1)


def test_workers_give_what_this_process_gives(folder: Path) -> None:
    texts = {bytes([i]): p.read_text() for i, p in enumerate(sorted(folder.iterdir()))}
    parsed = parallel.parse_all(texts, min_chars=1)
    assert parsed == {key: parallel.bodies_of(text) for key, text in texts.items()}  # dates kept as dates
    here, there = load(folder, cache=FileCache()), load(folder, cache=in_workers())
    assert there.version == here.version
    assert [t.model_dump() for t in there.targets.values()] == [t.model_dump() for t in here.targets.values()]


def test_too_little_text_starts_no_process(folder: Path) -> None:
    texts = {b"a": (folder / "m00.yaml").read_text()}
    assert parallel.parse_all(texts, min_chars=len(texts[b"a"]) + 1) == {}


def test_hostile_and_broken_files_give_the_same_problems(folder: Path) -> None:
    """An alias bomb and malformed YAML are refused in the worker as in process: file, document, line."""
    bomb = "\n".join("    " + line for line in alias_bomb().splitlines())
    (folder / "bomb.yaml").write_text(manifest(900).replace("  desired: {", "  desired:\n" + bomb + "\n  x: {"))
    (folder / "broken.yaml").write_text(manifest(901) + "---\nkind: Target\nmetadata: {name: [\n")
    (folder / "binary.yaml").write_bytes(b"kind: \xff\xfe\n")

    def problems(cache: FileCache) -> list[str]:
        with pytest.raises(ConfigurationError) as info:
            load(folder, cache=cache)
        return [str(p) for p in info.value.problems]

    there = problems(in_workers())
    assert there == problems(FileCache())
    assert any("bomb.yaml: document 1" in p for p in there)
    assert any("broken.yaml: document 2" in p and "line" in p for p in there)
    assert any("binary.yaml" in p and "cannot be read" in p for p in there)


def test_a_file_changed_after_the_workers_parsed_it_is_parsed_again(folder: Path) -> None:
    cache = in_workers()
    files = sorted(folder.iterdir())
    cache.prefetch(files)
    assert len(cache.bodies) == len(files)
    files[0].write_text(manifest(0).replace("n: 0", "n: 77"))
    assert cache.get(files[0]).documents[0].model.spec.desired["n"] == 77  # type: ignore[union-attr]


def test_workers_that_cannot_start_leave_the_load_to_this_process(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", refuse)
    assert parallel.parse_all({b"a": "a: 1\n"}, min_chars=1) == {}
    assert len(load(folder, cache=in_workers()).targets) == 120
