"""A reload reads only the files that changed (desired/files.py), and says what a load from scratch says."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from pathlib import Path

import pytest
import yaml

from reconciler.desired import files, version
from reconciler.desired.files import FileCache
from reconciler.desired.loader import load
from reconciler.desired.source import DesiredSource
from reconciler.domain import filestat
from reconciler.domain.state import DesiredState
from reconciler.domain.values import canonical_json
from reconciler.errors import ConfigurationError


def target(name: str, desired: str = "{x: 1}", extends: str | None = None) -> str:
    base = f"  extends: {extends}\n" if extends else ""
    return (
        f"kind: Target\nmetadata: {{name: {name}}}\nspec:\n  source: {{adapter: file, path: {name}.yaml}}\n"
        f"{base}  desired: {desired}\n"
    )


BASE = "kind: Base\nmetadata: {name: svc}\nspec:\n  desired: {level: INFO, db: {pool: 10}}\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def reload(folder: Path, previous: DesiredState, cache: FileCache) -> DesiredState:
    state = load(folder, previous=previous, cache=cache)
    fresh = load(folder)  # from scratch, without the cache: the same content, the same version
    assert state.version == fresh.version
    assert {n: (t.origin, t.metadata, t.spec) for n, t in state.targets.items()} == {
        n: (t.origin, t.metadata, t.spec) for n, t in fresh.targets.items()
    }
    changes = state.changed_since(previous)  # what it says changed: what a comparison of every object finds
    assert changes is not None and fresh.changes is None and fresh.changed_since(previous) is None
    assert changes.replaced == {n for n, t in state.targets.items() if previous.targets.get(n) is not t}
    assert changes.removed == previous.targets.keys() - state.targets.keys()
    assert state.changes_from(previous) is changes
    walked = dataclasses.replace(state, changes=None).changes_from(previous)  # not told: found by a walk
    assert (walked.replaced, walked.removed) == (changes.replaced, changes.removed)
    return state


def test_an_edit_parses_only_the_edited_file(tmp_path: Path) -> None:
    """Of three files, one edited: that one is parsed again, the others' targets are the objects they were."""
    for name in "abc":
        write(tmp_path, f"{name}.yaml", target(name))
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    assert cache.parsed == 3
    write(tmp_path, "b.yaml", target("b", "{x: 2}"))
    second = reload(tmp_path, first, cache)
    assert cache.parsed == 4
    assert second.targets["a"] is first.targets["a"] and second.targets["c"] is first.targets["c"]
    assert second.targets["b"].spec.desired == {"x": 2} and second.version != first.version
    assert load(tmp_path, previous=second, cache=cache).targets == second.targets
    assert cache.parsed == 4  # nothing changed: nothing parsed


def test_a_rewrite_with_the_same_bytes_is_not_parsed_again(tmp_path: Path) -> None:
    """A file written again with what it held (a checkout, a touch) is read, but not parsed again."""
    path = write(tmp_path, "a.yaml", target("a"))
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    path.write_text(target("a"))
    os.utime(path, ns=(1, 1))
    assert reload(tmp_path, first, cache).targets["a"] is first.targets["a"]
    assert cache.parsed == 1


def test_an_edit_that_keeps_size_and_mtime_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit of the same size with the modification time set back is still an edit (the change time moves),
    also for a file read long after its last change (not racy)."""
    monkeypatch.setattr(filestat, "RACY_NS", 0)
    path = write(tmp_path, "a.yaml", target("a", "{x: 1}"))
    before = path.stat()
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    path.write_text(target("a", "{x: 2}"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert reload(tmp_path, first, cache).targets["a"].spec.desired == {"x": 2}


def test_a_racy_file_is_compared_by_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a filesystem whose clock did not move between two writes (identity the same), a file read within
    RACY_NS of its last change is read again, and the source sees the second write."""
    monkeypatch.setattr(files, "identity", lambda st: (st.st_dev, st.st_ino, st.st_size))  # a coarse clock
    path = write(tmp_path, "a.yaml", target("a", "{x: 1}"))
    source = DesiredSource(tmp_path)
    assert source.current().targets["a"].spec.desired == {"x": 1}
    path.write_text(target("a", "{x: 2}"))  # the same size, and the same identity here
    assert source.current().targets["a"].spec.desired == {"x": 2}
    monkeypatch.setattr(filestat, "RACY_NS", 0)  # once old enough, a file is trusted by its identity
    source.current()
    path.write_text(target("a", "{x: 3}"))
    assert source.current().targets["a"].spec.desired == {"x": 2}  # what a coarse clock costs, after RACY_NS


def test_a_base_edit_rebuilds_its_dependents(tmp_path: Path) -> None:
    """A target whose file did not change is merged again when its Base (in another file) changed; a target
    of another Base, or of none, stays the object it was, and a Base edit that changes nothing changes none."""
    write(tmp_path, "bases.yaml", BASE + "---\n" + BASE.replace("svc", "other"))
    write(tmp_path, "t.yaml", target("on-svc", "{db: {pool: 20}}", extends="svc"))
    write(tmp_path, "u.yaml", target("on-other", "{}", extends="other") + "---\n" + target("plain"))
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    assert first.targets["on-svc"].spec.desired == {"level": "INFO", "db": {"pool": 20}}
    write(tmp_path, "bases.yaml", BASE.replace("INFO", "DEBUG") + "---\n" + BASE.replace("svc", "other"))
    second = reload(tmp_path, first, cache)
    assert cache.parsed == 4  # bases.yaml only
    assert second.targets["on-svc"].spec.desired == {"level": "DEBUG", "db": {"pool": 20}}
    assert second.targets["on-other"] is first.targets["on-other"]  # its Base was read again, but says the same
    assert second.targets["plain"] is first.targets["plain"]
    write(tmp_path, "bases.yaml", BASE.replace("INFO", "DEBUG") + "---\n" + BASE.replace("svc", "other") + "# c\n")
    third = reload(tmp_path, second, cache)
    assert all(third.targets[n] is second.targets[n] for n in third.targets)


def test_a_chain_of_bases_is_merged_again_below_an_edit(tmp_path: Path) -> None:
    """A Base that extends an edited Base is merged again, and so are the targets below it."""
    write(tmp_path, "root.yaml", BASE)
    write(tmp_path, "mid.yaml", "kind: Base\nmetadata: {name: mid}\nspec:\n  extends: svc\n  desired: {m: 1}\n")
    write(tmp_path, "t.yaml", target("t", "{}", extends="mid"))
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    write(tmp_path, "root.yaml", BASE.replace("pool: 10", "pool: 11"))
    second = reload(tmp_path, first, cache)
    assert second.targets["t"].spec.desired == {"level": "INFO", "db": {"pool": 11}, "m": 1}


def test_files_added_removed_and_renamed(tmp_path: Path) -> None:
    """An added file is the only one parsed; a removed file's targets are gone; a renamed file's targets come
    from their new place (a new object, a new version)."""
    write(tmp_path, "a.yaml", target("a"))
    write(tmp_path, "b.yaml", target("b"))
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    write(tmp_path, "c.yaml", target("c"))
    second = reload(tmp_path, first, cache)
    assert sorted(second.targets) == ["a", "b", "c"] and cache.parsed == 3
    (tmp_path / "b.yaml").unlink()
    third = reload(tmp_path, second, cache)
    assert sorted(third.targets) == ["a", "c"] and third.targets["a"] is first.targets["a"]
    (tmp_path / "a.yaml").rename(tmp_path / "z.yaml")
    fourth = reload(tmp_path, third, cache)
    assert fourth.targets["a"] is not third.targets["a"] and fourth.version != third.version
    origin = fourth.targets["a"].origin
    assert origin is not None and origin.file == tmp_path / "z.yaml"
    assert set(cache.files) == {tmp_path / "c.yaml", tmp_path / "z.yaml"}


def test_the_changes_of_a_reload_are_told_for_the_state_it_followed_alone(tmp_path: Path) -> None:
    """A reload tells which targets came, changed and went since the state it was loaded after, and tells it of
    that very state alone; it does not keep that state alive."""
    for name in ("a", "b", "c"):
        write(tmp_path, f"{name}.yaml", target(name))
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    write(tmp_path, "a.yaml", target("a", "{x: 2}"))
    write(tmp_path, "d.yaml", target("d"))
    (tmp_path / "c.yaml").unlink()
    second = reload(tmp_path, first, cache)
    changes = second.changed_since(first)
    assert changes is not None and changes.replaced == {"a", "d"} and changes.removed == {"c"}
    assert second.targets["b"] is first.targets["b"]
    assert second.changed_since(second) is None and second.changed_since(None) is None
    assert second.changed_since(load(tmp_path)) is None  # the same content, another state
    del first
    assert changes.previous() is None


def test_an_invalid_edit_keeps_the_last_good_state(tmp_path: Path) -> None:
    """An edit that breaks one file is refused, with the problems a load from scratch names; the state before
    it stays; the broken file is not parsed again until it changes; the fix is taken."""
    for name in "ab":
        write(tmp_path, f"{name}.yaml", target(name))
    source = DesiredSource(tmp_path)
    good = source.current()
    write(tmp_path, "b.yaml", target("b", "{x: 1}\n  interval: soon"))
    assert source.current() is good
    with pytest.raises(ConfigurationError) as scratch:
        load(tmp_path)
    assert source.last_error is not None and source.last_error.problems == scratch.value.problems
    parsed = source._files.parsed
    write(tmp_path, "a.yaml", target("a", "{x: 5}"))  # another file edited: still refused, b not parsed again
    assert source.current() is good and source._files.parsed == parsed + 1
    write(tmp_path, "b.yaml", target("b", "{x: 2}"))
    fixed = source.current()
    assert source.last_error is None and fixed.targets["b"].spec.desired == {"x": 2}
    assert fixed.targets["a"].spec.desired == {"x": 5}


def test_problems_across_files_are_found_again_on_a_reload(tmp_path: Path) -> None:
    """A duplicate name and a bad unset in files that did not change are reported again when another file
    changes (only a good load is remembered)."""
    write(tmp_path, "a.yaml", target("a"))
    write(tmp_path, "bases.yaml", BASE.replace("desired:", "unset: [/nope]\n  desired:"))
    write(tmp_path, "t.yaml", target("t", "{}", extends="svc"))
    cache = FileCache()
    with pytest.raises(ConfigurationError) as first:
        load(tmp_path, cache=cache)
    write(tmp_path, "b.yaml", target("a"))
    with pytest.raises(ConfigurationError) as second:
        load(tmp_path, cache=cache)
    shown = [str(p) for p in second.value.problems]
    assert str(first.value.problems[0]) in shown
    assert any("b.yaml: document 1 (a): metadata.name: Target 'a' is already defined in" in p for p in shown)


def test_the_digest_is_built_from_the_files(tmp_path: Path) -> None:
    """The version digest is SHA-256 over the sorted (relative path, digest of the file's documents) pairs:
    whatever order the files come in, the same; another when a document changes or moves to another file; a
    file of comments only adds nothing."""
    write(tmp_path, "a.yaml", target("a") + "---\n" + target("b"))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "c.yaml", target("c"))
    state = load(tmp_path)
    documents = {
        "a.yaml": [yaml.safe_load(target("a")), yaml.safe_load(target("b"))],
        "sub/c.yaml": [yaml.safe_load(target("c"))],
    }
    pairs = [[path, hashlib.sha256(canonical_json(docs).encode()).hexdigest()] for path, docs in documents.items()]
    assert state.version.digest == hashlib.sha256(canonical_json(sorted(pairs)).encode()).hexdigest()
    shuffled = [(p, d) for p, d in pairs]  # as tuples, in another order
    random.Random(1).shuffle(shuffled)
    assert version.of_files(shuffled) == version.of_files(reversed(shuffled)) == state.version.digest
    write(tmp_path, "notes.yaml", "# nothing but a comment\n")
    assert load(tmp_path).version == state.version
    write(tmp_path, "a.yaml", target("a"))
    write(tmp_path, "b.yaml", target("b"))
    assert load(tmp_path).version != state.version  # the same documents, in other files


def test_a_cached_reload_says_what_a_load_from_scratch_says(tmp_path: Path) -> None:
    """Through a run of random edits (values, Bases, files added and removed), every reload through the cache
    has the version and the targets of a load without it."""
    rng = random.Random(17)
    write(tmp_path, "bases.yaml", BASE)
    names = [f"t{i}" for i in range(12)]
    for i, name in enumerate(names):
        write(tmp_path, f"{name}.yaml", target(name, "{x: 0}", extends="svc" if i % 2 else None))
    cache = FileCache()
    state = load(tmp_path, cache=cache)
    for step in range(40):
        choice = rng.random()
        if choice < 0.2:
            write(tmp_path, "bases.yaml", BASE.replace("pool: 10", f"pool: {step}"))
        elif choice < 0.3 and len(list(tmp_path.glob("t*.yaml"))) > 2:
            rng.choice(sorted(tmp_path.glob("t*.yaml"))).unlink()
        else:
            name = rng.choice(names)
            write(
                tmp_path, f"{name}.yaml", target(name, f"{{x: {rng.randint(0, 3)}}}", extends=rng.choice([None, "svc"]))
            )
        new = reload(tmp_path, state, cache)
        same = [n for n in new.targets if n in state.targets and new.targets[n] == state.targets[n]]
        assert all(new.targets[n] is state.targets[n] for n in same if new.targets[n].origin == state.targets[n].origin)
        state = new


def test_a_reload_pauses_in_its_loops_and_says_what_one_without_pauses_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loops over every file and target call the pause (a daemon's reload lets a probe's answer go first,
    domain/pacing.py) and the state is the one a load without pauses gives."""
    monkeypatch.setattr(filestat, "RACY_NS", 0)  # no file is racy: only the edited one is read again
    for chunk in range(3):
        names = [f"t{chunk}-{i:04}" for i in range(1000)]
        write(tmp_path, f"targets-{chunk}.yaml", "---\n".join(target(n, extends="svc") for n in names))
    write(tmp_path, "base.yaml", BASE)
    cache = FileCache()
    first = load(tmp_path, cache=cache)
    write(tmp_path, "targets-1.yaml", (tmp_path / "targets-1.yaml").read_text().replace("{x: 1}", "{x: 2}", 1))
    pauses: list[int] = []
    second = load(tmp_path, previous=first, cache=cache, pause=lambda: pauses.append(1))
    # the file parsed again (1), the files' documents (4 files: 1), the merges onto the Base and the targets
    # kept (3,000 targets: 3 each)
    assert len(pauses) == 8
    assert second.version == load(tmp_path).version
    assert second.targets["t1-0000"].spec.desired["x"] == 2
    assert second.targets["t0-0000"] is first.targets["t0-0000"]
