from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest

from reconciler.desired.loader import load, manifest_files
from reconciler.desired.source import DesiredSource
from reconciler.errors import ConfigurationError
from tests.conftest import EXAMPLES

GOOD = """kind: Target
metadata: {name: a}
spec:
  source: {adapter: file, path: a.yaml}
  desired: {x: 1}
"""


def problems(tmp_path: Path, text: str, name: str = "m.yaml") -> list[str]:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path)
    return [str(p) for p in info.value.problems]


def test_example_loads() -> None:
    """The bundled example is valid: three targets and a policy."""
    state = load(EXAMPLES / "desired")
    assert sorted(state.targets) == ["checkout-staging", "payments-api-prod", "payments-api-staging"]
    assert state.targets["payments-api-prod"].spec.interval == 30.0
    assert len(state.version.digest) == 64


def test_malformed_yaml_names_file_document_and_line(tmp_path: Path) -> None:
    """Broken YAML is reported with the file, the document number and the line."""
    (found,) = problems(tmp_path, GOOD + "---\nkind: Target\nmetadata: {name: b\n")
    assert "m.yaml: document 2: malformed YAML: line" in found


def test_unknown_kind(tmp_path: Path) -> None:
    """An unknown kind names the kinds that exist."""
    (found,) = problems(tmp_path, "kind: Targt\nmetadata: {name: a}\n")
    assert "m.yaml: document 1 (a): kind: unknown kind 'Targt'; expected one of Target, Base, Policy" in found


def test_missing_and_unknown_fields_are_named(tmp_path: Path) -> None:
    """A missing field and a misspelt one are each reported with their dotted path; all problems at once."""
    text = "kind: Target\nmetadata: {name: a}\nspec:\n  source: {adapter: file}\n  desird: {}\n"
    found = problems(tmp_path, text)
    assert any("document 1 (a): spec.desired: required field is missing" in p for p in found)
    assert any("document 1 (a): spec.desird: unknown field" in p for p in found)


def test_exception_without_owner_is_refused(tmp_path: Path) -> None:
    """Exceptions need a reason, an owner and an expiry."""
    policy = "kind: Policy\nmetadata: {name: p}\nspec:\n  exceptions:\n    - {targets: [a], paths: [/x], reason: r}\n"
    found = problems(tmp_path, policy)
    assert any("spec.exceptions.0.owner: required field is missing" in p for p in found)
    assert any("spec.exceptions.0.expires: required field is missing" in p for p in found)


def test_bad_values_are_explained(tmp_path: Path) -> None:
    """Bad durations, modes and globs say what was expected."""
    text = GOOD.replace("desired: {x: 1}", "desired: {x: 1}\n  interval: soon\n  mode: yolo\n  ignore: [metadata]")
    found = "\n".join(problems(tmp_path, text))
    assert "spec.interval: 'soon' is not a duration" in found
    assert "spec.mode: Input should be 'dry-run' or 'apply'" in found
    assert "spec.ignore.0: JSON Pointer 'metadata' must start with '/'" in found


def test_duplicate_target_names_across_files(tmp_path: Path) -> None:
    """Two targets with one name are refused, naming where the first one is."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (found,) = problems(tmp_path, GOOD, name="b.yaml")
    assert "b.yaml: document 1 (a): metadata.name: Target 'a' is already defined in" in found
    assert "a.yaml document 1" in found


def test_version_follows_content_and_git(tmp_path: Path) -> None:
    """The digest changes with the content, not with formatting; in a git work tree the commit is recorded."""
    (tmp_path / "a.yaml").write_text(GOOD)
    first = load(tmp_path).version
    (tmp_path / "a.yaml").write_text(GOOD.replace("{x: 1}", "{x:   1}") + "\n# a comment\n")
    assert load(tmp_path).version.digest == first.digest
    (tmp_path / "a.yaml").write_text(GOOD.replace("{x: 1}", "{x: 2}"))
    assert load(tmp_path).version.digest != first.digest
    assert first.git_commit is None
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    committed = load(tmp_path).version
    assert committed.git_commit is not None and len(committed.git_commit) == 40 and not committed.git_dirty
    (tmp_path / "a.yaml").write_text(GOOD)
    assert load(tmp_path).version.git_dirty


def test_source_keeps_the_last_good_version(tmp_path: Path) -> None:
    """An invalid edit is refused and remembered; the last good state stays in force until a valid edit."""
    (tmp_path / "a.yaml").write_text(GOOD)
    source = DesiredSource(tmp_path)
    good = source.current()
    (tmp_path / "a.yaml").write_text("kind: Target\nmetadata: {name: a\n")
    assert source.current() is good
    assert source.last_error is not None and "malformed YAML" in str(source.last_error)
    (tmp_path / "a.yaml").write_text(GOOD.replace("{x: 1}", "{x: 3}"))
    assert source.current().targets["a"].spec.desired == {"x": 3}
    assert source.last_error is None


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    """A folder that does not exist, or holds no manifests, is an error that says so."""
    with pytest.raises(ConfigurationError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(ConfigurationError, match=r"holds no \.yaml"):
        load(tmp_path)


def test_a_reload_keeps_the_objects_of_unchanged_targets(tmp_path: Path) -> None:
    """After an edit, a target whose manifest says what it said is the very object it was (what the daemon's
    memo of it is kept for); an edited target is a new object."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("name: a", "name: b"))
    source = DesiredSource(tmp_path)
    first = source.current()
    (tmp_path / "b.yaml").write_text(GOOD.replace("name: a", "name: b").replace("{x: 1}", "{x: 2}"))
    second = source.current()
    assert second.version != first.version
    assert second.targets["a"] is first.targets["a"]
    assert second.targets["b"] is not first.targets["b"] and second.targets["b"].spec.desired == {"x": 2}


def test_manifest_files_are_listed_as_paths_sort_hidden_and_linked_folders_left_out(tmp_path: Path) -> None:
    """The walk of strings the desired state's poll uses lists what Path.rglob listed, in Path order (by path
    component: "a/z.yaml" before "a-b/a.yaml", though "-" sorts before "/" as characters)."""
    root = tmp_path / "desired"
    for name in ("a/z.yaml", "a-b/a.yaml", "a/b/c.yml", "top.yaml", "a/notes.txt", ".git/x.yaml", "a/.hidden.yaml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("kind: Policy\n")
    (root / "linked").symlink_to(root / "a", target_is_directory=True)  # rglob does not follow it either
    (root / "folder.yaml").mkdir()  # a folder with a manifest's suffix is no file
    expected = sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".yaml", ".yml")
        and p.is_file()
        and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    assert [p.relative_to(root).as_posix() for p in expected] == ["a/b/c.yml", "a/z.yaml", "a-b/a.yaml", "top.yaml"]
    assert manifest_files(root) == expected
    assert manifest_files(root / "top.yaml") == [root / "top.yaml"]


def test_targets_given_the_same_fields_share_one_set_of_their_names(tmp_path: Path) -> None:
    """A model's set of the fields its document gave is one object for every model given the same fields
    (0.9 KB a target otherwise); the models are frozen, and a copy with changes gets a set of its own."""
    (tmp_path / "t.yaml").write_text(
        "".join(
            f"---\nkind: Target\nmetadata: {{name: t{i}, app: a}}\n"
            f"spec:\n  source: {{adapter: file, path: t{i}.yaml}}\n  desired: {{x: {i}}}\n"
            for i in range(3)
        )
        + "---\nkind: Target\nmetadata: {name: other}\nspec:\n  source: {adapter: file, path: o.yaml}\n"
        "  desired: {x: 1}\n  interval: 30s\n"
    )
    targets = load(tmp_path).targets
    t0, t1, t2, other = (targets[name] for name in ("t0", "t1", "t2", "other"))
    for part in (lambda t: t, lambda t: t.metadata, lambda t: t.spec, lambda t: t.spec.source):
        assert part(t0).__pydantic_fields_set__ is part(t1).__pydantic_fields_set__ is part(t2).__pydantic_fields_set__
    assert other.metadata.__pydantic_fields_set__ == {"name"} and t0.metadata.__pydantic_fields_set__ == {"name", "app"}
    assert other.spec.__pydantic_fields_set__ != t0.spec.__pydantic_fields_set__
    changed = t0.spec.model_copy(update={"prune": True})
    assert "prune" in changed.model_fields_set and "prune" not in t1.spec.model_fields_set
    with pytest.raises(ValueError, match="frozen"):
        t0.metadata.app = "b"  # type: ignore[misc]
    assert t1.metadata.__pydantic_fields_set__ == {"name", "app"}


def test_targets_share_their_empty_fields_and_repeated_names(tmp_path: Path) -> None:
    """What most targets leave empty (labels, ignore, secrets, ...) is one shared object that refuses changes, and
    an app, an environment and an adapter's name are one string for every target that gives them: a replica
    keeps every target of the desired state, ~0.7 KB a target otherwise. Where a document came from is kept."""
    for file in ("a.yaml", "b.yaml"):
        (tmp_path / file).write_text(
            f"kind: Target\nmetadata: {{name: {file[0]}, app: pay, environment: prod}}\n"
            f"spec:\n  source: {{adapter: file, path: {file}}}\n  desired: {{x: 1}}\n"
            + ("  ignore: [/x]\n  list_keys: {/l: id}\n" if file == "b.yaml" else "")
        )
    targets = load(tmp_path).targets
    a, b = targets["a"], targets["b"]
    assert a.metadata.environment is b.metadata.environment and a.metadata.app is b.metadata.app
    assert a.spec.source.adapter is b.spec.source.adapter
    empties = (a.spec.unset, a.spec.ignore, a.spec.secrets, a.spec.normalize, a.spec.environment_specific)
    assert all(part == [] and part is empties[0] for part in empties) and b.spec.unset is a.spec.unset
    assert a.metadata.labels == {} and a.metadata.labels is a.spec.list_keys is b.metadata.labels
    assert [str(g) for g in b.spec.ignore] == ["/x"] and b.spec.list_keys == {"/l": "id"}
    for change in (
        lambda: a.spec.ignore.append("/y"),
        lambda: a.spec.unset.extend(["/y"]),
        lambda: a.metadata.labels.update(team="x"),
        lambda: a.spec.list_keys.__setitem__("/l", "id"),
    ):
        with pytest.raises(TypeError, match="shared and cannot change"):
            change()
    assert a.spec.ignore == [] and b.metadata.labels == {}
    for mine in (copy.copy(a.spec.ignore), copy.deepcopy(a.metadata.labels), list(a.spec.secrets), a.spec.unset[:]):
        assert type(mine) in (list, dict) and not mine  # a copy is the caller's own, to change
    assert a.origin is not None and (a.origin.file, a.origin.document) == (tmp_path / "a.yaml", 1)
    copied = a.with_spec(a.spec.model_copy(update={"prune": True}))
    assert copied.origin == a.origin and copied.spec.prune and copied.spec.ignore == []
    assert a.model_dump(mode="json", exclude={"spec": {"packed"}})["spec"]["ignore"] == []
