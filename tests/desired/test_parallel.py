"""A large load's YAML parsed by worker processes (desired/parallel.py) gives what a parse in process gives:
the same state and version, the same problems for hostile or broken files; a file that changes after the
workers parsed it is parsed again; workers that cannot start leave the load to this process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired import parallel
from reconciler.desired.files import FileCache, ParsedFile, read_manifest
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
    return FileCache(parallel_min_bytes=1)


def test_workers_give_what_this_process_gives(folder: Path) -> None:
    files = sorted(folder.iterdir())
    tasks = parallel.tasks_of(files, min_bytes=1)
    assert [f for task in tasks for f in task] == files
    results = [one for parsed in parallel.parse_tasks(tasks, read_manifest) for one in parsed]
    assert [one[1] if one else None for one in results] == [parallel.bodies_of(f.read_text()) for f in files]
    here, there = load(folder, cache=FileCache()), load(folder, cache=in_workers())
    assert there.version == here.version
    assert [t.model_dump() for t in there.targets.values()] == [t.model_dump() for t in here.targets.values()]


def test_tasks_follow_the_files_and_too_little_starts_no_process(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(folder.iterdir())
    assert parallel.tasks_of(files, min_bytes=sum(f.stat().st_size for f in files) + 1) == []
    monkeypatch.setattr(parallel, "TASK_BYTES", files[0].stat().st_size * 3)
    tasks = parallel.tasks_of(files, min_bytes=1)
    assert [len(t) for t in tasks] == [3, 3, 3, 3]  # consecutive, in order, about TASK_BYTES each


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


def test_a_file_changed_after_the_workers_parsed_it_is_parsed_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get() takes a worker's result only for the bytes it parsed: a file written after the workers read it is
    parsed again here, with its new content."""
    files = sorted(folder.iterdir())
    cache = in_workers()
    real_get = cache.get
    taken: list[int] = []

    def get(file: Path) -> ParsedFile:
        if file == files[0]:
            taken.append(len(cache.bodies))  # the first task's results are here by now
            file.write_text(manifest(0).replace("n: 0", "n: 77"))
        return real_get(file)

    monkeypatch.setattr(cache, "get", get)
    parsed = cache.get_all(files)
    assert taken and taken[0] > 0
    assert parsed[0].documents[0].model.spec.desired["n"] == 77  # type: ignore[union-attr]
    assert parsed[1].documents[0].model.spec.desired["n"] == 10  # type: ignore[union-attr]
    assert cache.bodies == {}  # nothing kept after the load


def test_workers_that_cannot_start_leave_the_load_to_this_process(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", refuse)
    assert list(parallel.parse_tasks([[folder / "m00.yaml"]], read_manifest)) == []
    assert len(load(folder, cache=in_workers()).targets) == 120
