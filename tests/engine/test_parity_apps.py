"""A new desired version regroups only the apps it changed, and the apps are what a load from scratch finds."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.source import DesiredSource
from reconciler.domain.clock import SystemClock
from reconciler.engine.parity_watch import ParityWatch
from reconciler.observe.metrics import Metrics

ENVIRONMENTS = ("dev", "staging", "prod", "prod-eu")


def manifest(name: str, app: str, environment: str, value: int) -> str:
    return (
        f"kind: Target\nmetadata: {{name: {name}, environment: {environment}, app: {app}}}\n"
        f"spec:\n  source: {{adapter: file, path: {name}.yaml}}\n  desired: {{x: {value}}}\n"
    )


def write(folder: Path, targets: dict[str, tuple[str, str, int]]) -> None:
    """One file a target: an edit rewrites only the files whose target it changed."""
    for old in folder.glob("*.yaml"):
        if old.stem not in targets:
            old.unlink()
    for name, (app, environment, value) in targets.items():
        path, text = folder / f"{name}.yaml", manifest(name, app, environment, value)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def shape(watch: ParityWatch) -> dict[str, Any]:
    """Each app's targets (names, in order), baseline, environments and pairs."""
    return {
        app: (
            [t.name for t in known.targets],
            known.baseline,
            known.environments,
            [(a.name, b.name) for _, a, b in known.pairs],
        )
        for app, known in watch._apps.items()
    }


@pytest.mark.parametrize("told", [True, False], ids=["changes-told", "changes-found"])
def test_each_version_regroups_what_it_changed_and_matches_a_load_from_scratch(tmp_path: Path, told: bool) -> None:
    """Random edits (a value, an app, an environment, a target added or removed), each loaded on the last: the
    apps, their targets in order, baselines and pairs are those of a watch loaded on that version alone, and an
    app none of whose targets changed keeps its very object. What changed is the loader's (told), or found by
    comparing objects when a state does not say."""
    rng = random.Random(17)
    folder = tmp_path / "desired"
    folder.mkdir()
    targets = {f"t{i:02}": (f"app{i % 5}", ENVIRONMENTS[i % 4], 0) for i in range(30)}
    write(folder, targets)
    source = DesiredSource(folder)
    watch = ParityWatch(Metrics().parity, lambda _: None, SystemClock())
    pauses: list[int] = []
    watch.load(source.current(), lambda: pauses.append(1))
    assert pauses
    kept = 0
    for step in range(40):
        before = dict(watch._apps)
        edited = rng.sample(sorted(targets), 2)
        app, environment, value = targets[edited[0]]
        kind = step % 5
        if kind == 0:
            targets[edited[0]] = (app, environment, value + 1)
        elif kind == 1:
            targets[edited[0]] = (f"app{rng.randrange(7)}", environment, value)
        elif kind == 2:
            targets[edited[0]] = (app, rng.choice(ENVIRONMENTS), value)
        elif kind == 3 and len(targets) > 5:
            del targets[edited[0]]
        else:
            targets[f"n{step:02}"] = (f"app{rng.randrange(7)}", rng.choice(ENVIRONMENTS), 0)
        write(folder, targets)
        state = source.current()
        if told and state is not watch._state:  # else the edit changed nothing: the same state again
            assert state.changed_since(watch._state) is not None, step
        watch.load(state if told else dataclasses.replace(state, changes=None))
        fresh = ParityWatch(Metrics().parity, lambda _: None, SystemClock())
        fresh.load(state)
        assert shape(watch) == shape(fresh), step
        for name, known in before.items():  # its targets the very objects they were, none came or went
            now = [t for t in state.targets.values() if t.metadata.app == name]
            if {t.name for t in now} == {t.name for t in known.targets} and {id(t) for t in now} == {
                id(t) for t in known.targets
            }:
                assert watch._apps[name] is known, (step, name)
                kept += 1
    assert kept > 40  # most apps were kept across most edits
