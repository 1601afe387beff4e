from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired.loader import load
from reconciler.errors import ConfigurationError

BASES = """kind: Base
metadata: {name: service}
spec:
  desired: {log_level: INFO, db: {pool: 10, timeout: 30, host: db.internal}, tags: [a, b]}
  ignore: ["/metadata/**"]
  list_keys: {"/servers": name}
---
kind: Base
metadata: {name: payments}
spec:
  extends: service
  desired: {db: {pool: 20}, feature: {fast_pay: false}}
  unset: ["/db/host"]
  secrets: ["/db/password"]
"""


def target(name: str, spec: str) -> str:
    return f"kind: Target\nmetadata: {{name: {name}}}\nspec:\n  source: {{adapter: file, path: x.yaml}}\n{spec}"


def test_targets_deep_merge_onto_a_chain_of_bases(tmp_path: Path) -> None:
    """Maps merge key by key down the chain, lists are replaced, unset removes keys, globs accumulate."""
    (tmp_path / "bases.yaml").write_text(BASES)
    (tmp_path / "t.yaml").write_text(
        target("pay-prod", "  extends: payments\n  desired: {db: {timeout: 60}, tags: [c]}\n  unset: [/log_level]\n")
        + "---\n"
        + target("plain", "  desired: {a: 1}\n")
    )
    state = load(tmp_path)
    spec = state.targets["pay-prod"].spec
    assert spec.desired == {"db": {"pool": 20, "timeout": 60}, "tags": ["c"], "feature": {"fast_pay": False}}
    assert [str(g) for g in spec.ignore] == ["/metadata/**"]
    assert [str(g) for g in spec.secrets] == ["/db/password"]
    assert spec.list_keys == {"/servers": "name"}
    assert state.targets["plain"].spec.desired == {"a": 1}
    assert "service" not in state.targets  # bases are never reconciled
    assert state.targets["pay-prod"].origin is not None


def test_a_target_that_extends_needs_no_desired(tmp_path: Path) -> None:
    """A target may take its whole desired state from its base."""
    (tmp_path / "bases.yaml").write_text(BASES)
    (tmp_path / "t.yaml").write_text(target("pay", "  extends: payments\n"))
    assert load(tmp_path).targets["pay"].spec.desired["db"] == {"pool": 20, "timeout": 30}


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        (
            target("t", "  extends: nope\n"),
            "t.yaml: document 1 (t): spec.extends: no Base named 'nope' (bases: none defined)",
        ),
        (
            "kind: Base\nmetadata: {name: a}\nspec: {extends: b}\n---\nkind: Base\nmetadata: {name: b}\nspec: {extends: a}\n"
            "---\n" + target("t", "  extends: a\n"),
            "spec.extends: extends cycle: a -> b -> a",
        ),
        (target("t", "  desired: {a: 1}\n  unset: [/b]\n"), "spec.unset.0: /b is not in the merged desired state"),
    ],
)
def test_bad_overlays_are_refused(tmp_path: Path, docs: str, message: str) -> None:
    """A missing base, a cycle and an unset of a key that is not there are errors naming the field."""
    (tmp_path / "t.yaml").write_text(docs)
    with pytest.raises(ConfigurationError) as info:
        load(tmp_path)
    assert any(message in str(p) for p in info.value.problems), info.value.problems


def test_a_copied_target_does_not_keep_cached_values_of_its_old_spec(tmp_path: Path) -> None:
    """with_spec drops values cached from the old spec (references, wave)."""
    (tmp_path / "t.yaml").write_text(target("t", "  desired: {x: '${env:A}'}\n"))
    original = load(tmp_path).targets["t"]
    assert original.has_references and original.wave == 9
    copied = original.with_spec(original.spec.model_copy(update={"desired": {"x": 1}, "wave": 2}))
    assert not copied.has_references and copied.wave == 2 and copied.origin == original.origin


def test_unset_in_one_target_leaves_its_base_and_siblings_alone(tmp_path: Path) -> None:
    """Merges share unchanged values with the base; an unset copies the maps it changes, so a sibling target
    of the same base still sees the key."""
    (tmp_path / "bases.yaml").write_text(BASES)
    (tmp_path / "t.yaml").write_text(
        target("one", "  extends: payments\n  unset: [/db/timeout]\n")
        + "---\n"
        + target("two", "  extends: payments\n")
    )
    state = load(tmp_path)
    assert state.targets["one"].spec.desired["db"] == {"pool": 20}
    assert state.targets["two"].spec.desired["db"] == {"pool": 20, "timeout": 30}
