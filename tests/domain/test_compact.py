"""A fleet's manifest models hold what they have in common once: the set of fields given, and the table of their
fields' names. Nothing a model says or does changes."""

from __future__ import annotations

import copy
import gc
import pickle
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from reconciler.desired.loader import load
from reconciler.domain import compact as compacting
from reconciler.domain.compact import compact, shared_names
from reconciler.domain.manifest import Origin, Target


def body(i: int, **source: Any) -> dict[str, Any]:
    return {
        "kind": "Target",
        "metadata": {"name": f"t{i}", "app": "pay", "environment": "prod"},
        "spec": {
            "source": {"adapter": "file", "path": f"t{i}.yaml", **source},
            "desired": {"x": i, "nested": {"y": "z"}},
            "interval": "30s",
            "ignore": ["/a/*"],
        },
    }


def kept_per_model(build: Callable[[int], Any], count: int = 300) -> float:
    """Bytes kept per model that `build` makes (traced allocations, not timing)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [build(i) for i in range(count)]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == count
    return (after - before) / count


def test_a_compacted_target_says_and_does_what_it_did() -> None:
    plain = Target.model_validate(body(1))
    plain.placed(Origin(Path("t.yaml"), 1))
    made = Target.model_validate(body(1)).placed(Origin(Path("t.yaml"), 1))
    assert compact(made) is made
    dump = {"exclude": {"spec": {"packed"}}, "mode": "json"}
    assert made == plain and made.model_dump(**dump) == plain.model_dump(**dump)  # type: ignore[arg-type]
    assert list(made.__dict__)[:4] == list(plain.__dict__)[:4]  # fields in their order, then what came later
    assert list(made.spec.__dict__) == list(plain.spec.__dict__)
    assert (made.name, made.environment, made.wave, made.has_references) == ("t1", "prod", plain.wave, False)
    assert made.origin == Origin(Path("t.yaml"), 1) and made.spec.desired == {"x": 1, "nested": {"y": "z"}}
    assert made.spec.source.options() == {"path": "t1.yaml"}
    assert pickle.loads(pickle.dumps(made)) == plain and copy.deepcopy(made) == plain
    changed = made.with_spec(made.spec.model_copy(update={"prune": True}))
    assert changed.spec.prune and not made.spec.prune and changed.origin == made.origin
    assert changed.name == "t1" and "prune" in changed.spec.model_fields_set


def test_compacted_models_keep_less_than_their_own_tables() -> None:
    """A target's four models' dicts share their tables of names: over 300 bytes a target less (about 560 on
    CPython 3.11), on top of one shared set of the fields given."""

    def own(i: int) -> Target:
        return Target.model_validate(body(i))

    def shared(i: int) -> Target:
        return compact(Target.model_validate(body(i)))

    for target in (own(0), shared(0)):  # the fields sets and layouts of these names exist before the count
        compact(target)
    assert kept_per_model(shared) < kept_per_model(own) - 300
    a, b = shared(1), shared(2)
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.spec.__pydantic_fields_set__ is b.spec.__pydantic_fields_set__


def test_names_that_are_no_plain_attributes_are_kept_as_given() -> None:
    """A source's options are the manifest's own names: one like a dunder is never set on the shared layout (as
    `__class__` would change its class); such a dict stays as it was, and the target as it said."""
    target = compact(Target.model_validate(body(1, __class__="x", __dict__={"a": 1}, other=2)))
    assert target.spec.source.options() == {"path": "t1.yaml", "__class__": "x", "__dict__": {"a": 1}, "other": 2}
    assert type(target.spec.source).__name__ == "SourceSpec"
    items = {"__init__": 1, "b": 2}
    assert shared_names(items) is items
    assert shared_names({1: "x"}) == {1: "x"}  # type: ignore[dict-item]


def test_past_the_bound_a_model_keeps_its_own(monkeypatch: Any) -> None:
    """Documents that name fields of their own can make many distinct sets of names; past the bound, each keeps
    its own dict, and the shared layouts do not grow."""
    monkeypatch.setattr(compacting, "_LAYOUTS", {})
    monkeypatch.setattr(compacting, "MAX_LAYOUTS", 2)
    first, second, third = {"a": 1}, {"b": 1}, {"c": 1}
    assert shared_names(first) is not first and shared_names(second) == second
    assert shared_names(third) is third and len(compacting._LAYOUTS) == 2
    assert shared_names({"a": 2}) == {"a": 2} and list(shared_names({"a": 3, "z": 4})) == ["a", "z"]


def test_targets_on_a_base_are_compacted_too(tmp_path: Path) -> None:
    """A target that extends a Base is a copy made by the merge: it shares its tables as a target of its own does,
    and says what its merge says."""
    docs = [
        {"kind": "Base", "metadata": {"name": "common"}, "spec": {"desired": {"a": 1, "b": 2}}},
        {
            "kind": "Target",
            "metadata": {"name": "on-base"},
            "spec": {"source": {"adapter": "file", "path": "x.yaml"}, "extends": "common", "desired": {"b": 3}},
        },
        {"kind": "Target", "metadata": {"name": "own"}, "spec": {"source": {"adapter": "file", "path": "y.yaml"}}},
    ]
    docs[2]["spec"]["desired"] = {"a": 1}  # type: ignore[index]
    (tmp_path / "d.yaml").write_text(yaml.safe_dump_all(docs))
    targets = load(tmp_path).targets
    merged, own = targets["on-base"], targets["own"]
    assert merged.spec.desired == {"a": 1, "b": 3} and merged.origin == Origin(tmp_path / "d.yaml", 2)
    assert merged.__pydantic_fields_set__ is own.__pydantic_fields_set__
    assert merged.name == "on-base" and merged.environment == "default"
    assert "name" in merged.__dict__ and "has_references" in merged.__dict__  # computed before the table was built
